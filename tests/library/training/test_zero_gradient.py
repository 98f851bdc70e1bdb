"""Which batches can reach the trained vectors, and the zero gradients of those that cannot.

That skipping their backward trains exactly the same vectors is specified end to end in
tests/test_train_textual_inversion.py."""

from __future__ import annotations

import pytest
import torch

from library.models.loading import load_models
from library.training.trainable_tokens import setup_trainable_tokens
from library.training.zero_gradient import batch_reaches_vectors, fill_missing_gradients
from tests.helpers.training import TOKEN


@pytest.fixture(scope="module")
def sd1_tokens(tiny_model_dir):
    models = load_models(str(tiny_model_dir("sd1")))
    tokens = setup_trainable_tokens(models.tokenizers, models.text_encoders, ["emb_params"], token_string=TOKEN, num_vectors=2, init_word="star")
    return models.tokenizers, tokens


def test_a_batch_reaches_the_vectors_only_through_a_trained_token(sd1_tokens):
    tokenizers, tokens = sd1_tokens
    assert batch_reaches_vectors(tokens, tokenizers, ["a star on a white background", f"a {TOKEN} on gray"], None)
    assert batch_reaches_vectors(tokens, tokenizers, [f"a {TOKEN}1 star"], None)  # any one of the N vectors
    assert not batch_reaches_vectors(tokens, tokenizers, ["a star on a white background", ""], None)


def test_a_token_cut_off_by_the_caption_length_does_not_reach_them(sd1_tokens):
    tokenizers, tokens = sd1_tokens
    long_caption = "star " * 80 + TOKEN
    assert not batch_reaches_vectors(tokens, tokenizers, [long_caption], None)  # 75 tokens: truncated away
    assert batch_reaches_vectors(tokens, tokenizers, [long_caption], 150)  # --max_token_length 150 keeps it


def test_missing_gradients_become_zeros_and_present_ones_stay():
    skipped, trained = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(2, 3))
    trained.grad = torch.full((2, 3), 0.5)
    fill_missing_gradients([skipped, trained])
    assert torch.equal(skipped.grad, torch.zeros(2, 3)) and torch.equal(trained.grad, torch.full((2, 3), 0.5))
