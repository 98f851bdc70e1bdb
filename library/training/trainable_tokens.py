"""The N new tokens of a TI run, registered in every tokenizer and backed by trainable vectors."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from library.token_embedding import ExtendedTokenEmbedding, init_vectors_from_word, install_vectors
from library.tokens import add_new_tokens, make_caption_rewriter, new_token_names

logger = logging.getLogger(__name__)


class PublishedVectors:
    """`published()` for token holders that define vectors_by_slot, published_vectors and load_vectors."""

    @contextmanager
    def published(self) -> Iterator[None]:
        """Within the block the text encoders embed the published vectors (for sampling); the live ones come back after."""
        live = self.vectors_by_slot()
        self.load_vectors(self.published_vectors())
        try:
            yield
        finally:
            self.load_vectors(live)


@dataclass
class TrainableTokens(PublishedVectors):
    """New token names, their ids per tokenizer, and the embedding module per text encoder."""

    token_string: str
    names: list[str]
    ids: list[list[int]]  # per tokenizer
    embeddings: list[ExtendedTokenEmbedding]  # per text encoder
    slots: list[str]  # per text encoder: file key ("emb_params" for SD, "clip_l"/"clip_g" for SDXL)
    trained: list[bool]  # per text encoder

    def parameters(self) -> list[torch.nn.Parameter]:
        return [emb.vectors for emb, on in zip(self.embeddings, self.trained) if on]

    def vectors_by_slot(self) -> dict[str, torch.Tensor]:
        """The trained (live) vectors as detached fp32 CPU copies, keyed as the embedding file stores them.

        This is what a resumable state holds: training continues from exactly these.
        """
        return {slot: emb.vectors.detach().float().cpu().clone() for slot, emb in zip(self.slots, self.embeddings)}

    def published_vectors(self) -> dict[str, torch.Tensor]:
        """The vectors the run publishes: every embedding file it writes and every sample image it draws.

        The one seam between "what trains" and "what is handed out": today they are the live vectors; an average of
        them (EMA) would be returned here, and saving and sampling follow without change.
        """
        return self.vectors_by_slot()

    def load_vectors(self, vectors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for slot, emb in zip(self.slots, self.embeddings):
                emb.vectors.copy_(vectors[slot].to(emb.vectors.device, torch.float32))

    def caption_rewriter(self):
        return make_caption_rewriter(self.token_string, self.names)

    @property
    def num_vectors(self) -> int:
        return len(self.names)

    @property
    def concepts(self) -> list["TrainableTokens"]:
        """The concepts this object trains: itself (a ConceptTokens has several)."""
        return [self]

    def triggers(self) -> dict[str, list[str]]:
        """Token string -> its token names, for every concept (sample-prompt checks)."""
        return {self.token_string: self.names}


@dataclass
class ConceptTokens(PublishedVectors):
    """Several concepts trained in one run (issue 17), each a TrainableTokens with its own parameter per encoder.

    Offers the one-concept interface the loop, saver and sampler use: parameters, the state's vectors (keyed
    "SLOT/TOKEN_STRING"), the published vectors, a caption rewriter for all concepts, all token names and ids.
    """

    concepts: list[TrainableTokens]

    @property
    def token_string(self) -> str:
        return self.concepts[0].token_string

    @property
    def names(self) -> list[str]:
        return [n for c in self.concepts for n in c.names]

    @property
    def ids(self) -> list[list[int]]:
        return [[i for c in self.concepts for i in c.ids[k]] for k in range(len(self.slots))]

    @property
    def slots(self) -> list[str]:
        return self.concepts[0].slots

    @property
    def trained(self) -> list[bool]:
        return self.concepts[0].trained

    @property
    def embeddings(self) -> list[ExtendedTokenEmbedding]:
        return [e for c in self.concepts for e in c.embeddings]

    @property
    def num_vectors(self) -> int:
        return len(self.names)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for c in self.concepts for p in c.parameters()]

    def param_groups(self, learning_rates: list[float]) -> list[dict]:
        """One optimizer param group per concept, with its own learning rate."""
        return [{"params": c.parameters(), "lr": lr} for c, lr in zip(self.concepts, learning_rates)]

    def vectors_by_slot(self) -> dict[str, torch.Tensor]:
        return {f"{slot}/{c.token_string}": v for c in self.concepts for slot, v in c.vectors_by_slot().items()}

    def published_vectors(self) -> dict[str, torch.Tensor]:
        return {f"{slot}/{c.token_string}": v for c in self.concepts for slot, v in c.published_vectors().items()}

    def load_vectors(self, vectors: dict[str, torch.Tensor]) -> None:
        for c in self.concepts:
            c.load_vectors({slot: vectors[f"{slot}/{c.token_string}"] for slot in c.slots})

    def caption_rewriter(self):
        """Every concept's token string rewritten to its names (names never overlap: concepts.resolve_concepts)."""
        rewriters = [c.caption_rewriter() for c in self.concepts]

        def rewrite(caption: str) -> str:
            for r in rewriters:
                caption = r(caption)
            return caption

        return rewrite

    def triggers(self) -> dict[str, list[str]]:
        return {c.token_string: c.names for c in self.concepts}


def setup_trainable_tokens(
    tokenizers: list,
    text_encoders: list,
    slots: list[str],
    *,
    token_string: str,
    num_vectors: int,
    init_word: str | None,
    initial_vectors: dict[str, torch.Tensor] | None = None,
    trained: list[bool] | None = None,
    separate: bool = False,
) -> TrainableTokens:
    """Add the tokens to each tokenizer and install fp32 vectors behind each text encoder.

    Vectors start from `initial_vectors` (--weights) when given, else from the init word's token embeddings.
    With `separate`, the vectors get their own parameter even if the encoders already hold other new tokens.
    """
    assert token_string and token_string.strip(), "a token string is needed (flag_rules refuses a missing --token_string)"
    names = new_token_names(token_string, num_vectors)
    trained = trained or [True] * len(text_encoders)
    ids, embeddings = [], []
    for tokenizer, encoder, slot, on in zip(tokenizers, text_encoders, slots, trained):
        ids.append(add_new_tokens(tokenizer, names))
        if initial_vectors is not None:
            vectors = initial_vectors[slot]
        else:
            vectors, note = init_vectors_from_word(tokenizer, encoder, init_word, num_vectors)
            if note and slot == slots[0]:
                logger.info(note)
        embeddings.append(install_vectors(encoder, vectors, trainable=on, separate=separate))
    return TrainableTokens(token_string, names, ids, embeddings, slots, trained)


def setup_concept_tokens(tokenizers: list, text_encoders: list, slots: list[str], concepts, *, trained: list[bool] | None = None) -> ConceptTokens:
    """Add every concept's tokens to the tokenizers once, each concept with its own parameter per text encoder."""
    return ConceptTokens([
        setup_trainable_tokens(tokenizers, text_encoders, slots, token_string=c.token_string, num_vectors=c.num_vectors,
                               init_word=c.init_word, trained=trained, separate=True)
        for c in concepts
    ])
