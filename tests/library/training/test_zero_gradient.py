"""Batches that cannot reach the trained vectors skip their backward pass and train exactly the same vectors."""

from __future__ import annotations

import pytest
import torch

from library.training.parser import build_parser
from library.models.loading import load_models
from library.toyworld.world import HELD_OUT, caption, make_dataset
from library.training import loop
from library.training.config_file import parse_args_with_config
from library.training.trainable_tokens import setup_trainable_tokens
from library.training.zero_gradient import batch_reaches_vectors, fill_missing_gradients
from tests.helpers.training import TOKEN, train_argv


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


def _dataset_with_regularisation_images(root):
    """Two images of the concept captioned with the token and two regularisation images without it."""
    make_dataset(root / "train", 2, seed=1, include=[HELD_OUT], caption_fn=lambda scene: caption(scene, subject=TOKEN))
    make_dataset(root / "reg", 2, seed=2, include=[HELD_OUT], caption_fn=lambda scene: caption(scene, subject="star"))
    config = root / "dataset.toml"
    config.write_text(
        "[general]\ncaption_extension = '.txt'\n[[datasets]]\nresolution = 64\nbatch_size = 1\n"
        f"[[datasets.subsets]]\nimage_dir = '{(root / 'train').as_posix()}'\n"
        f"[[datasets.subsets]]\nimage_dir = '{(root / 'reg').as_posix()}'\nis_reg = true\n"
    )
    return config


# --torch_compile keeps the graph (no recompile for no-grad mode) and skips only the backward
@pytest.mark.parametrize(("family", "accumulation", "extra"), [
    ("sd1", 1, []), ("sd1", 2, []), ("sdxl", 1, []), ("sd1", 1, ["--torch_compile", "--dynamo_backend=aot_eager"]),
])
def test_regularisation_batches_skip_the_backward_and_train_the_same_vectors(tiny_model_dir, tmp_path, monkeypatch, family, accumulation, extra):
    config = _dataset_with_regularisation_images(tmp_path / "data")
    sdxl = family == "sdxl"
    parser = build_parser(sdxl)

    def run(out):
        # AdamW's default weight decay and its momentum move the vectors on zero-gradient steps too
        argv = train_argv(tiny_model_dir(family), config, out, "--cache_latents", f"--gradient_accumulation_steps={accumulation}", *extra, steps=6)
        return loop.train(parse_args_with_config(parser, argv), sdxl=sdxl)

    skipping = run(tmp_path / "skipping")
    monkeypatch.setattr(loop, "batch_reaches_vectors", lambda *args: True)  # the plain path: a backward for every batch
    every_backward = run(tmp_path / "every_backward")

    assert skipping.skipped_backwards > 0 and every_backward.skipped_backwards == 0
    for slot, vectors in skipping.tokens.vectors_by_slot().items():
        assert torch.equal(vectors, every_backward.tokens.vectors_by_slot()[slot]), slot
    torch.testing.assert_close(torch.tensor(skipping.losses), torch.tensor(every_backward.losses))  # same logged losses
