"""A text encoder's token embedding extended by a small table of new vectors.

Only the N new vectors are a parameter (N x dim, fp32). The original 49408 x dim table stays frozen and
untouched, so gradients and optimizer state are N x dim, and no step has to restore the other rows.
The same module serves training (trainable vectors) and generation (frozen vectors from embedding files).
"""

from __future__ import annotations

import torch
from torch import nn


class ExtendedTokenEmbedding(nn.Module):
    """Looks up ids below `num_base` in the frozen base table and ids from `num_base` on in `vectors`."""

    def __init__(self, base: nn.Embedding, vectors: torch.Tensor, trainable: bool = True):
        super().__init__()
        self.base = base
        self.num_base = base.num_embeddings
        # fp32 master copy regardless of the frozen weights' dtype
        self.vectors = nn.Parameter(vectors.detach().to(device=base.weight.device, dtype=torch.float32).clone(), requires_grad=trainable)

    @property
    def weight(self) -> torch.Tensor:
        # transformers reads .weight for dtype/device; the base table is the meaningful one
        return self.base.weight

    @property
    def num_embeddings(self) -> int:
        return self.num_base + self.vectors.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        is_new = input_ids >= self.num_base
        base_out = self.base(torch.where(is_new, torch.zeros_like(input_ids), input_ids))
        new_index = (input_ids - self.num_base).clamp(0, self.vectors.shape[0] - 1)
        new_out = self.vectors.to(base_out.dtype)[new_index]
        return torch.where(is_new.unsqueeze(-1), new_out, base_out)

    def extend(self, vectors: torch.Tensor) -> tuple[int, int]:
        """Append more (frozen or trainable) vectors; returns the id range [start, end) they occupy."""
        start = self.num_embeddings
        merged = torch.cat([self.vectors.data, vectors.to(self.vectors.device, torch.float32)])
        self.vectors = nn.Parameter(merged, requires_grad=self.vectors.requires_grad)
        return start, start + vectors.shape[0]


def install_vectors(text_encoder: nn.Module, vectors: torch.Tensor, trainable: bool = True, *, separate: bool = False) -> ExtendedTokenEmbedding:
    """Put `vectors` behind the text encoder's vocabulary (ids from its current size on).

    If the encoder already has an ExtendedTokenEmbedding, the vectors are appended to it; with `separate` they get a
    module (and a parameter) of their own wrapped around it instead, so that several concepts trained in one run
    (issue 17) each have their own parameter, optimizer param group and learning rate.
    """
    current = text_encoder.get_input_embeddings()
    if isinstance(current, ExtendedTokenEmbedding) and not separate:
        current.extend(vectors)
        return current
    extended = ExtendedTokenEmbedding(current, vectors, trainable=trainable)
    text_encoder.set_input_embeddings(extended)
    return extended


def embedding_rows_for_ids(text_encoder: nn.Module, token_ids: list[int]) -> torch.Tensor:
    """The embedding rows (fp32) of existing tokens, e.g. to initialise new vectors from an init word."""
    table = text_encoder.get_input_embeddings()
    base = table.base if isinstance(table, ExtendedTokenEmbedding) else table
    with torch.no_grad():
        return base.weight[torch.tensor(token_ids, device=base.weight.device)].float().clone()


def init_vectors_from_word(tokenizer, text_encoder: nn.Module, init_word: str | None, num_vectors: int) -> tuple[torch.Tensor, str | None]:
    """N initial vectors from the init word's tokens, cycled if it has fewer tokens than N and cut if more.

    Returns the vectors and a note for the user when the token count and N differ (None otherwise).
    Without an init word, "*" is used, as AUTOMATIC1111 does.
    """
    word = init_word if init_word else "*"
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if not ids:
        from library.errors import UserError

        raise UserError(f"--init_word {init_word!r} encodes to no tokens; pass a real word such as 'girl'")
    note = None
    if len(ids) != num_vectors:
        how = "repeated" if len(ids) < num_vectors else "truncated"
        note = f"--init_word {word!r} has {len(ids)} token(s) for {num_vectors} vector(s); its token vectors are {how} to fill them"
    rows = embedding_rows_for_ids(text_encoder, ids)
    index = torch.arange(num_vectors) % len(ids)
    return rows[index], note
