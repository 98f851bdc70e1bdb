"""New-token naming, registration in a tokenizer, and the caption rewrite.

A token string trained with N vectors becomes N tokens named as sd-scripts names them:
`mychar4`, `mychar41`, `mychar42`, `mychar43`. In captions the token string is replaced, as a whole word,
by those N tokens, so that each caption feeds all N vectors to the text encoder.
"""

from __future__ import annotations

import re
from typing import Callable

from transformers import CLIPTokenizer

from library.errors import UserError


def new_token_names(token_string: str, num_vectors: int) -> list[str]:
    """`token_string` followed by `token_string1 … token_string{N-1}`."""
    assert num_vectors >= 1, f"num_vectors must be at least 1 (flag_rules refuses --num_vectors_per_token < 1), got {num_vectors}"
    return [token_string] + [f"{token_string}{i}" for i in range(1, num_vectors)]


def add_new_tokens(tokenizer: CLIPTokenizer, names: list[str], flag: str = "--token_string") -> list[int]:
    """Add `names` to the tokenizer and return their ids (49408 and up for CLIP).

    Refuses a name that the vocabulary already has, since training it would change an existing word.
    """
    existing = [n for n in names if _is_known_token(tokenizer, n)]
    if existing:
        raise UserError(
            f"{flag}: the token(s) {', '.join(existing)} already exist in the tokenizer's vocabulary; "
            "choose a token string that is not a real word, e.g. a made-up word with a digit such as 'mychar4'"
        )
    added = tokenizer.add_tokens(names)
    if added != len(names):
        raise UserError(f"{flag}: could not add all of {names} to the tokenizer (added {added})")
    return tokenizer.convert_tokens_to_ids(names)


def _is_known_token(tokenizer: CLIPTokenizer, name: str) -> bool:
    # A name is "known" if it is an added token or a single whole-word BPE token (e.g. "cat" -> "cat</w>").
    if name in tokenizer.get_added_vocab():
        return True
    ids = tokenizer(name, add_special_tokens=False).input_ids
    return len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids[0]).removesuffix("</w>") == name.lower()


def token_pattern(token_string: str) -> re.Pattern:
    """Matches `token_string` as a whole word: `cat` matches in "a cat," but not in "catalog"."""
    return re.compile(r"(?<!\w)" + re.escape(token_string) + r"(?!\w)")


def make_caption_rewriter(token_string: str, names: list[str]) -> Callable[[str], str]:
    """A function that replaces the whole-word token string by all N token names."""
    pattern = token_pattern(token_string)
    replacement = " ".join(names)
    return lambda caption: pattern.sub(lambda _m: replacement, caption)


def contains_token(caption: str, token_string: str) -> bool:
    """True if `token_string` occurs in `caption` as a whole word."""
    return token_pattern(token_string).search(caption) is not None
