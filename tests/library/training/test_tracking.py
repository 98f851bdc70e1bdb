"""Tracker flags as sd-scripts reads them: which tracker, which folder, what config, and the key kept secret."""

from __future__ import annotations

import logging
import sys

import pytest

from library.training.flag_rules import FlagError, check_training_flags, flag_problems
from library.training.parser import build_parser
from library.training.tracking import public_args, run_logging_dir, tracker_config, tracker_init_kwargs, trackers_for


def _args(*cli: str):
    return build_parser(sdxl=False).parse_args(["--token_string", "x", *cli])


# kohya-ss/sd-scripts library/train_util.py prepare_accelerator (2025): (flags, trackers)
SD_SCRIPTS_TRACKERS = [
    ((), []),
    (("--logging_dir=logs",), ["tensorboard"]),
    (("--logging_dir=logs", "--log_with=wandb"), ["wandb"]),
    (("--logging_dir=logs", "--log_with=all"), ["tensorboard", "wandb"]),
    (("--log_with=wandb",), ["wandb"]),
]


@pytest.mark.parametrize(("cli", "expected"), SD_SCRIPTS_TRACKERS)
def test_trackers_follow_sd_scripts(cli, expected):
    assert trackers_for(_args(*cli)) == expected


def test_tensorboard_without_a_logging_dir_is_refused():
    assert "--log_with tensorboard needs --logging_dir" in flag_problems(_args("--log_with=tensorboard"), sdxl=False)[0]


def test_each_run_gets_a_prefixed_timestamped_folder():
    assert run_logging_dir(_args("--logging_dir=logs", "--log_prefix=mine_"), now=0).replace("\\", "/").startswith("logs/mine_19")
    assert run_logging_dir(_args()) is None


def test_flags_reach_the_tracker_only_with_log_config_and_never_the_key_or_paths():
    args = _args("--logging_dir=logs", "--wandb_api_key=SECRET", "--pretrained_model_name_or_path=/home/me/model.safetensors",
                 "--optimizer_args", "weight_decay=0.1")
    assert tracker_config(args) is None  # sd-scripts: no --log_config, no config
    args.log_config = True
    config = tracker_config(args)
    assert config["token_string"] == "x" and config["optimizer_args"] == "['weight_decay=0.1']" and config["log_config"] is True
    # sd-scripts' get_sanitized_config_or_none leaves out the key and local paths
    assert not {"wandb_api_key", "pretrained_model_name_or_path", "logging_dir", "output_dir"} & set(config)
    assert "SECRET" not in repr(config) and "SECRET" not in repr(public_args(args))


def test_run_name_joins_the_tracker_config_file(tmp_path, caplog):
    path = tmp_path / "t.toml"
    path.write_text("[wandb]\ntags = ['a']\n[tensorboard]\nflush_secs = 5\n")
    kwargs = tracker_init_kwargs(_args("--log_with=wandb", f"--log_tracker_config={path}", "--wandb_run_name=run1"))
    assert kwargs == {"wandb": {"tags": ["a"], "name": "run1"}, "tensorboard": {"flush_secs": 5}}
    path.write_text("[wandb]\nname = 'from-file'\n")
    with caplog.at_level(logging.WARNING):
        kwargs = tracker_init_kwargs(_args("--log_with=wandb", f"--log_tracker_config={path}", "--wandb_run_name=run1"))
    assert kwargs == {"wandb": {"name": "from-file"}} and "wins over --wandb_run_name 'run1'" in caplog.text


def test_a_bad_tracker_config_is_listed_with_the_other_problems(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("project = 'x'\n")
    problems = flag_problems(_args("--logging_dir=l", f"--log_tracker_config={path}", "--num_vectors_per_token=0"), sdxl=False)
    assert problems[0] == "--num_vectors_per_token must be at least 1, got 0"
    assert problems[1].startswith(f"--log_tracker_config {path}: top-level keys must be tables")


def test_flags_a_missing_tracker_cancels_are_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        flag_problems(_args("--log_config", "--wandb_run_name=r"), sdxl=False)
    assert "--log_config: no effect without a tracker" in caplog.text
    assert "--wandb_run_name: no effect unless --log_with is wandb or all" in caplog.text


def test_a_missing_tracker_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed: import wandb raises ImportError
    with pytest.raises(FlagError) as caught:
        check_training_flags(_args("--log_with=wandb"), sdxl=False, dataset=False)
    assert "needs the package 'wandb', which is not installed. Install it with: pip install wandb" in str(caught.value)
