"""End-to-end: validation, tracker and latent-sampling flags of the trainer do what docs/training_options.md says."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors import safe_open

from library.training.parser import run_training
from tests.helpers.training import make_ti_dataset, train_argv

pytestmark = [pytest.mark.slow, pytest.mark.training]  # each test trains the tiny model (10-30 s on two shared cores)



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


def _scalars(logging_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = [p for p in logging_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    (event_file,) = runs[0].rglob("events.out.tfevents.*")  # accelerate writes RUN/<tracker name>/events...
    assert event_file.parent.name == "textual_inversion"  # --log_tracker_name's default, as sd-scripts' TI
    events = EventAccumulator(str(event_file.parent), size_guidance={"scalars": 0})
    events.Reload()
    return runs[0], {tag: [s.step for s in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_logging_dir_alone_logs_to_tensorboard(tiny_model_dir, tmp_path, dataset):
    logs = tmp_path / "logs"
    argv = train_argv(tiny_model_dir("sd1"), dataset, tmp_path / "out", f"--logging_dir={logs}", "--log_prefix=ti_",
                      "--validation_split=0.25", steps=2)
    run_training(argv)
    run, scalars = _scalars(logs)
    assert run.name.startswith("ti_") and len(run.name) == len("ti_") + 14  # sd-scripts: PREFIX + YYYYmmddHHMMSS
    assert scalars["loss/current"] == [1, 2] and scalars["lr"] == [1, 2] and scalars["loss/validation"] == [2]


SECRET = "0123456789abcdef0123456789abcdef01234567"  # looks like a W&B key (40 characters); never valid


def test_wandb_offline_gets_run_name_tracker_config_and_flags_but_never_the_key(tiny_model_dir, tmp_path, dataset, monkeypatch, caplog):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # wandb.login keeps the key in ~/.netrc: not the user's
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config"))
    tracker_config = tmp_path / "tracker.toml"
    tracker_config.write_text("[wandb]\ntags = ['ti-test']\n")
    out, logs = tmp_path / "out", tmp_path / "logs"
    argv = train_argv(tiny_model_dir("sd1"), dataset, out, f"--logging_dir={logs}", "--log_with=all", "--wandb_run_name=my-run",
                      f"--log_tracker_config={tracker_config}", "--log_config", f"--wandb_api_key={SECRET}",
                      "--save_state", "--save_every_n_steps=1", steps=2)
    with caplog.at_level(logging.DEBUG):
        run_training(argv)
    import wandb

    assert wandb.run is None  # the run was finished by end_training
    run_files = list(logs.rglob("run-*.wandb"))
    assert run_files, "no offline W&B run was written"
    written = [p for root in (out, logs) for p in root.rglob("*") if p.is_file()]
    assert written and not [p for p in written if SECRET.encode() in p.read_bytes()]
    assert SECRET not in caplog.text
    # the run's name, tags and flags reached wandb (its offline record holds them)
    record = b"".join(p.read_bytes() for p in run_files)
    assert b"my-run" in record and b"ti-test" in record and b"num_vectors_per_token" in record


@pytest.mark.parametrize("mode", ["once", "deterministic"])
def test_latent_sampling_gives_the_cached_latents_without_a_cache(tiny_model_dir, tmp_path, dataset, mode):
    model = tiny_model_dir("sd1")
    cached = run_training(train_argv(model, dataset, tmp_path / "cached", "--cache_latents", f"--latent_sampling={mode}", steps=2))
    uncached = run_training(train_argv(model, dataset, tmp_path / "uncached", f"--latent_sampling={mode}", "--training_comment=hello", steps=2))
    torch.testing.assert_close(uncached.losses, cached.losses, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(uncached.tokens.vectors_by_slot(), cached.tokens.vectors_by_slot(), rtol=1e-4, atol=1e-5)
    with safe_open(str(tmp_path / "uncached" / "ti.safetensors"), "pt") as f:
        assert f.metadata()["ss_training_comment"] == "hello"  # sd-scripts' key for --training_comment
