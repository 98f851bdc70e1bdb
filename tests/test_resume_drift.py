"""--resume continues the state's run exactly, or refuses naming what differs (seed, dataset, batch size, model)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from library.errors import UserError
from library.training.parser import run_training
from tests.helpers.training import make_ti_dataset, train_argv

pytestmark = [pytest.mark.slow, pytest.mark.training]  # trains the tiny model



@pytest.fixture(scope="module")
def saved_run(tiny_model_dir, tmp_path_factory):
    """A 4-step run that saved its state at step 2, on a dataset of its own (tests add images to copies)."""
    root = tmp_path_factory.mktemp("resume")
    dataset = make_ti_dataset(root / "data")
    model = tiny_model_dir("sd1")
    full = run_training(train_argv(model, dataset, root / "full", "--save_every_n_steps=2", "--save_state"))
    return model, dataset, root / "full" / "ti-step00000002-state", full


def test_a_changed_seed_is_replaced_by_the_states_and_the_run_continues_exactly(saved_run, tmp_path, caplog):
    model, dataset, state, full = saved_run
    argv = [a for a in train_argv(model, dataset, tmp_path, f"--resume={state}") if not a.startswith("--seed")] + ["--seed=99"]
    with caplog.at_level(logging.WARNING):
        resumed = run_training(argv)
    assert "continuing with the state's seed 7 (--seed 99 given)" in caplog.text
    torch.testing.assert_close(resumed.tokens.vectors_by_slot(), full.tokens.vectors_by_slot(), rtol=0, atol=1e-6)


def test_an_added_image_is_refused(saved_run, tmp_path):
    model, dataset, state, _ = saved_run
    images = dataset.parent / "images"
    copy = tmp_path / "images"
    shutil.copytree(images, copy)
    first = sorted(copy.glob("*.png"))[0]
    shutil.copy(first, copy / "added.png")
    shutil.copy(first.with_suffix(".txt"), copy / "added.txt")
    config = tmp_path / "dataset.toml"
    config.write_text(dataset.read_text().replace(images.as_posix(), copy.as_posix()))
    with pytest.raises(UserError, match=r"dataset: the state's had 4 images \(4 with repeats\), this one has 5 \(5\)"):
        run_training(train_argv(model, config, tmp_path / "out", f"--resume={state}"))


def test_a_changed_batch_size_is_refused(saved_run, tmp_path):
    model, dataset, state, _ = saved_run
    config = tmp_path / "dataset.toml"
    config.write_text(dataset.read_text().replace("batch_size = 2", "batch_size = 1"))
    with pytest.raises(UserError, match=r"batch size: the state's \[2\], this run's \[1\]"):
        run_training(train_argv(model, config, tmp_path / "out", f"--resume={state}"))


def test_another_model_is_refused(saved_run, tiny_model_dir, tmp_path):
    _, dataset, state, _ = saved_run
    with pytest.raises(UserError) as caught:
        run_training(train_argv(tiny_model_dir("sd2"), dataset, tmp_path / "out", f"--resume={state}", "--v_parameterization"))
    message = str(caught.value)
    assert message.startswith(f"--resume {state} cannot continue that run exactly: model family: the state's sd1, this run's sd2; base model:")
    assert message.endswith("start a new run from its vectors with --weights instead of --resume")


def test_a_state_from_before_the_run_record_still_resumes_with_a_warning(saved_run, tmp_path, caplog):
    model, dataset, state, full = saved_run
    old = tmp_path / "old-state"
    shutil.copytree(state, old)
    progress = json.loads((old / "progress.json").read_text())
    del progress["run"]
    (old / "progress.json").write_text(json.dumps(progress))
    with caplog.at_level(logging.WARNING):
        resumed = run_training(train_argv(model, dataset, tmp_path / "out", f"--resume={old}", "--save_state_on_train_end"))
    assert "written by an older version without a record of its model, dataset and batch size" in caplog.text
    torch.testing.assert_close(resumed.tokens.vectors_by_slot(), full.tokens.vectors_by_slot(), rtol=0, atol=1e-6)
    assert "run" in json.loads((tmp_path / "out" / "ti-state" / "progress.json").read_text())  # the next save records it
