"""Batches whose gradient is exactly zero: captions that tokenize to none of the trained tokens.

Regularisation images ("a photo of a girl"), captions without the token string and captions that lost the
token to truncation never reach the new vectors, so backpropagating their loss through the UNet and the
text encoders (about half of a step) yields zeros. The loop runs such a batch's forward without a graph (for
the logged loss) and skips its backward; the optimizer then steps on explicit zero gradients, exactly what the
backward would have produced, so momentum and weight decay move the vectors as they would have.
"""

from __future__ import annotations

import torch

from library.text_conditioning import tokenize_chunks


def batch_reaches_vectors(tokens, tokenizers: list, captions: list[str], max_token_length: int | None) -> bool:
    """Whether any caption, tokenized as the text encoders will see it, holds a trained token's id."""
    for tokenizer, ids, trained in zip(tokenizers, tokens.ids, tokens.trained):
        if trained and torch.isin(tokenize_chunks(tokenizer, captions, max_token_length), torch.tensor(ids)).any():
            return True
    return False


def fill_missing_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Zero gradients where every batch since the last step skipped its backward (optimizers skip None)."""
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
