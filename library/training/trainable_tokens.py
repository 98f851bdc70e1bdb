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


@dataclass
class TrainableTokens:
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

    @contextmanager
    def published(self) -> Iterator[None]:
        """Within the block the text encoders embed the published vectors (for sampling); the live ones come back after."""
        live = self.vectors_by_slot()
        self.load_vectors(self.published_vectors())
        try:
            yield
        finally:
            self.load_vectors(live)

    def load_vectors(self, vectors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for slot, emb in zip(self.slots, self.embeddings):
                emb.vectors.copy_(vectors[slot].to(emb.vectors.device, torch.float32))

    def caption_rewriter(self):
        return make_caption_rewriter(self.token_string, self.names)

    @property
    def num_vectors(self) -> int:
        return len(self.names)


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
) -> TrainableTokens:
    """Add the tokens to each tokenizer and install fp32 vectors behind each text encoder.

    Vectors start from `initial_vectors` (--weights) when given, else from the init word's token embeddings.
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
        embeddings.append(install_vectors(encoder, vectors, trainable=on))
    return TrainableTokens(token_string, names, ids, embeddings, slots, trained)
