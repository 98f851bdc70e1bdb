"""End-to-end: validation schedule flags and tracker flags of the trainer do what docs/training_options.md says."""

from __future__ import annotations

import logging

import pytest
import torch

from library.training.loop import train
from library.training.parser import parse_training_args
from tests.helpers.training import make_ti_dataset, train_argv

pytestmark = pytest.mark.slow  # each test trains the tiny model (10-30 s on two shared cores)


def run_training(argv: list[str]):
    return train(parse_training_args(argv), sdxl=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_ti_dataset(tmp_path_factory.mktemp("val_data"))  # 4 images, batch size 2


def test_validation_runs_at_the_end_of_each_epoch(tiny_model_dir, tmp_path, dataset, caplog):
    argv = train_argv(tiny_model_dir("sd1"), dataset, tmp_path, "--validation_split=0.25", "--validate_every_n_epochs=1", "--max_train_epochs=2")
    with caplog.at_level(logging.INFO):
        result = run_training(argv)
    # 3 training images in batches of 2: 2 steps per epoch
    assert [step for step, _ in result.validation_losses] == [2, 4]
    assert "epoch 1 (step 2): validation loss" in caplog.text and "epoch 2 (step 4): validation loss" in caplog.text


def test_a_validation_split_alone_validates_every_epoch_and_steps_add_to_it(tiny_model_dir, tmp_path, dataset):
    result = run_training(train_argv(tiny_model_dir("sd1"), dataset, tmp_path, "--validation_split=0.25", "--validate_every_n_steps=3", steps=4))
    assert [step for step, _ in result.validation_losses] == [2, 3, 4]  # epoch ends at 2 and 4, step 3


def test_max_validation_steps_limits_the_batches(tiny_model_dir, tmp_path, monkeypatch):
    from library.training import validation

    data = make_ti_dataset(tmp_path / "data", batch_size=1)  # 4 images; a split of 0.5 holds 2 validation batches
    batches = []

    def counting_step(*args, **kwargs):  # the real step, counted
        batches.append(torch.is_grad_enabled())
        return training_step(*args, **kwargs)

    training_step = validation.training_step
    monkeypatch.setattr(validation, "training_step", counting_step)
    base = train_argv(tiny_model_dir("sd1"), data, tmp_path / "all", "--validation_split=0.5", steps=2)
    run_training(base)
    assert batches == [False, False]  # one validation (end of epoch 1 = step 2) over both batches, without gradients
    batches.clear()
    run_training([*base, "--max_validation_steps=1", f"--output_dir={tmp_path / 'one'}"])
    assert batches == [False]
