"""Specification of the trainable tokens' two views: the live vectors that train, and the vectors a run publishes.

Embedding files and sample images go through `published_vectors()`; resumable states hold the live vectors. Today
both are equal; the tests pin the seam by publishing something else (end to end in tests/test_train_textual_inversion.py).
"""

from __future__ import annotations

import pytest
import torch

from library.models.loading import load_models
from library.training.trainable_tokens import setup_trainable_tokens
from tests.helpers.training import TOKEN


@pytest.fixture
def sd1_tokens(tiny_model_dir):
    models = load_models(str(tiny_model_dir("sd1")))
    tokens = setup_trainable_tokens(models.tokenizers, models.text_encoders, ["emb_params"], token_string=TOKEN, num_vectors=2, init_word="star")
    return models, tokens


def _embedded(models, tokens) -> torch.Tensor:
    """What the text encoder's embedding layer returns for the new token ids."""
    ids = torch.tensor([tokens.ids[0]])
    with torch.no_grad():
        return models.text_encoders[0].get_input_embeddings()(ids)[0].float()


def test_published_vectors_are_the_live_ones_as_a_detached_copy(sd1_tokens):
    _, tokens = sd1_tokens
    published = tokens.published_vectors()
    assert set(published) == {"emb_params"}
    assert torch.equal(published["emb_params"], tokens.parameters()[0].detach())
    published["emb_params"].add_(1.0)  # a consumer changing its copy does not touch training
    assert not torch.equal(published["emb_params"], tokens.parameters()[0].detach())


def test_within_published_the_encoder_embeds_the_published_vectors_then_the_live_ones_again(sd1_tokens, monkeypatch):
    models, tokens = sd1_tokens
    live = tokens.vectors_by_slot()["emb_params"]
    shifted = {"emb_params": live + 0.5}
    monkeypatch.setattr(tokens, "published_vectors", lambda: {k: v.clone() for k, v in shifted.items()})
    with tokens.published():
        assert torch.equal(_embedded(models, tokens), shifted["emb_params"])
    assert torch.equal(_embedded(models, tokens), live)
    with pytest.raises(RuntimeError), tokens.published():
        raise RuntimeError("sampling failed")
    assert torch.equal(tokens.vectors_by_slot()["emb_params"], live)  # restored on errors too
