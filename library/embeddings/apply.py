"""Putting embedding files into a loaded model, so prompts can use their trigger words.

Each file's trigger word (its file name without extension) becomes N new tokens, named as training names
them (`badhandv4`, `badhandv41`, ...), added to every tokenizer, with the file's vectors installed behind every
text encoder (frozen). The returned mapping rewrites prompts, negative prompts included, so the trigger word
(whole word, exact case) expands to all N tokens.

Widths are checked against the loaded text encoders, not hard-coded: a mismatch is a UserError naming the file
and both widths. One exception, as in ComfyUI: an SD 1.x (CLIP-L only) file on SDXL applies to CLIP-L, with a
warning. ComfyUI then drops the word from CLIP-G's prompt; one prompt rewrite serves both tokenizers here,
so CLIP-G gets zero vectors for those tokens instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from library.embeddings.formats import SD_SLOTS, SDXL_SLOTS
from library.embeddings.reader import read_embedding
from library.errors import UserError
from library.token_embedding import install_vectors
from library.tokens import add_new_tokens, make_token_rewriter, new_token_names


def slots_for(family: str) -> tuple[str, ...]:
    """The embedding-file slots of a model family's text encoders, in the pipeline's order."""
    if family == "sdxl":
        return SDXL_SLOTS
    if family in ("sd1", "sd2"):
        return SD_SLOTS
    raise ValueError(f"unknown model family {family!r}; expected 'sd1', 'sd2' or 'sdxl'")


def load_embeddings_into(tokenizers: list, text_encoders: list, family: str, paths: Iterable[str | Path]) -> dict[str, list[str]]:
    """Install the embedding files in the model; returns trigger word -> the token names it expands to."""
    slots = slots_for(family)
    if len(tokenizers) != len(slots) or len(text_encoders) != len(slots):
        raise ValueError(f"{family} has {len(slots)} text encoder(s); got {len(tokenizers)} tokenizer(s) and {len(text_encoders)} encoder(s)")
    dims = {slot: encoder.get_input_embeddings().embedding_dim for slot, encoder in zip(slots, text_encoders)}
    mapping: dict[str, list[str]] = {}
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        emb = read_embedding(path)
        trigger = emb.trigger
        if trigger.lower() in seen:
            raise UserError(f"{path}: its trigger word '{trigger}' is also the trigger word of {seen[trigger.lower()]}; rename one of the files")
        vectors = emb.vectors_for_slots(slots, dims, source=str(path))
        names = new_token_names(trigger, emb.num_vectors)
        flag = f"embedding {path} (its file name is its trigger word; rename the file to change it)"
        for tokenizer, encoder, slot in zip(tokenizers, text_encoders, slots):
            start = encoder.get_input_embeddings().num_embeddings
            ids = add_new_tokens(tokenizer, names, flag=flag)
            if ids != list(range(start, start + len(names))):
                raise RuntimeError(f"tokenizer ids {ids} and text-encoder rows from {start} are out of step for {path}")
            install_vectors(encoder, vectors[slot], trainable=False)
        mapping[trigger] = names
        seen[trigger.lower()] = path
    return mapping


def make_prompt_rewriter(mapping: dict[str, list[str]]) -> Callable[[str], str]:
    """A function that replaces each whole-word trigger word by its token names, in one pass.

    The same rewrite as training captions and sample prompts (library.tokens.make_token_rewriter): whole word,
    exact case, longest trigger first, and a trigger already followed by its names (`badhandv4 badhandv41`)
    gives each vector once.
    """
    return make_token_rewriter(mapping)
