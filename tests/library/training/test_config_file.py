"""Specification of --config_file: sd-scripts' TOML semantics, the CLI winning, and errors naming file and key."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from library.errors import UserError
from library.training.config_file import parse_args_with_config, resolve_config_path
from library.training.lr_schedulers import LearningRateSchedule


def _write(tmp_path: Path, text: str, name: str = "train.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _parse(parser, path, *cli):
    return parse_args_with_config(parser, ["--config_file", str(path), *cli])


def test_every_real_world_training_config_loads(trainer_parser, realworld_dir, caplog):
    files = sorted((realworld_dir / "train_configs").glob("*.toml"))
    assert len(files) >= 9
    for path in files:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            args = _parse(trainer_parser, path)
        assert args.optimizer_type and args.mixed_precision in ("no", "fp16", "bf16"), path.name
        # LoRA configs reused for TI carry network_* keys: they are named in one warning, not an error
        unknown = [r for r in caplog.records if "not flags of this script" in r.getMessage()]
        assert len(unknown) == 1 and "network_module" in unknown[0].getMessage(), path.name


def test_real_world_values_arrive_converted(trainer_parser, realworld_dir):
    configs = realworld_dir / "train_configs"
    args = _parse(trainer_parser, configs / "002_pspace_lora-config.toml")
    assert args.optimizer_args == ["weight_decay=0.1", "betas=0.9,0.99"]
    assert args.learning_rate == 0.0005 and args.lr_warmup_steps == 2348 and args.max_token_length == 225
    args = _parse(trainer_parser, configs / "007_hacknu_sdxl-colab-sectioned.toml")  # sections are flattened
    assert args.optimizer_args == ["weight_decay=0.1", "betas=[0.9,0.99]"] and args.full_fp16 and args.sdpa
    assert args.output_name == "Aldar_Kose" and args.lr_scheduler_num_cycles == 3
    args = _parse(trainer_parser, configs / "006_nurlan_sdxl-lora-dataset-arguments.toml")
    assert args.optimizer_type == "Prodigy" and args.learning_rate == 1.0 and args.noise_offset == 0.0357
    if hasattr(args, "resolution"):  # composed with the dataset flags
        assert args.resolution in ("1024,1024", (1024, 1024))


def test_the_command_line_wins_over_the_file(trainer_parser, tmp_path):
    path = _write(tmp_path, "max_train_steps = 500\nxformers = true\n[opt]\noptimizer_args = ['weight_decay=0.1']\nseed = 7\n")
    args = _parse(trainer_parser, path, "--max_train_steps", "10", "--optimizer_args", "betas=0.9,0.99")
    assert args.max_train_steps == 10 and args.optimizer_args == ["betas=0.9,0.99"]
    assert args.xformers is True and args.seed == 7  # from the file
    assert args.learning_rate == 2e-6  # neither: the default


def test_a_later_duplicate_wins_with_a_warning(trainer_parser, tmp_path, caplog):
    path = _write(tmp_path, "[a]\nseed = 1\n[b]\nseed = 2\n")
    with caplog.at_level(logging.WARNING):
        assert _parse(trainer_parser, path).seed == 2
    assert "'seed' is set in [a] and in [b]" in caplog.text


def test_unknown_keys_are_listed_in_one_warning_with_suggestions(trainer_parser, tmp_path, caplog):
    path = _write(tmp_path, "network_dim = 8\nmax_train_step = 100\n[x]\nnetwork_module = 'networks.lora'\nnoise_ofset = 0.1\n")
    with caplog.at_level(logging.WARNING):
        args = _parse(trainer_parser, path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    listed = "network_dim, max_train_step (did you mean max_train_steps?), network_module, noise_ofset (did you mean noise_offset?)"
    assert listed in warnings[0]
    assert str(path) in warnings[0]
    assert args.max_train_steps == 1600 and not hasattr(args, "network_dim")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('max_grad_norm = "abc"', "key 'max_grad_norm': --max_grad_norm expects a number, not 'abc'"),
        ("max_train_steps = 1.5", "key 'max_train_steps': --max_train_steps expects a whole number"),
        ('xformers = "yes"', "key 'xformers': --xformers is an on/off flag; write true or false"),
        ('mixed_precision = "fp32"', "key 'mixed_precision': 'fp32' is not a choice of --mixed_precision (choose from no, fp16, bf16)"),
        ("max_token_length = 75", "not a choice of --max_token_length (choose from 150, 225)"),
        ('learning_rate = "0.005:abc, 1e-5"', "key 'learning_rate': --learning_rate '0.005:abc, 1e-5': bad piece '0.005:abc'"),
        ('lr_warmup_steps = "ten"', "key 'lr_warmup_steps': --lr_warmup_steps 'ten' is not a step count"),
        ("[a]\nseed = {x = 1}", "[a] key 'seed': a table is not a value for --seed"),
    ],
)
def test_wrong_values_name_the_file_and_the_key(trainer_parser, tmp_path, toml, expected):
    path = _write(tmp_path, toml + "\n")
    with pytest.raises(UserError) as err:
        _parse(trainer_parser, path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_values_are_read_as_their_command_line_text(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=str, default=None)
    parser.add_argument("--config_file", type=str, default=None)
    parser.add_argument("--output_config", action="store_true")
    parser.add_argument("--tags", nargs="*", type=int, default=None)
    assert _parse(parser, _write(tmp_path, 'resolution = "1024,1024"\n')).resolution == "1024,1024"
    assert _parse(parser, _write(tmp_path, "resolution = 512\n", "b.toml")).resolution == "512"
    assert _parse(parser, _write(tmp_path, "resolution = [768, 512]\n", "c.toml")).resolution == "768,512"
    assert _parse(parser, _write(tmp_path, "tags = 3\n", "d.toml")).tags == [3]  # a scalar for a list flag


def test_learning_rates_from_the_file(trainer_parser, tmp_path):
    assert _parse(trainer_parser, _write(tmp_path, "learning_rate = 5e-5\n")).learning_rate == 5e-5
    args = _parse(trainer_parser, _write(tmp_path, 'learning_rate = "0.005:100, 1e-5"\n', "b.toml"))
    assert isinstance(args.learning_rate, LearningRateSchedule) and args.learning_rate.rate_at(100) == 1e-5


def test_paths_without_the_toml_suffix_get_it(trainer_parser, tmp_path):
    _write(tmp_path, "seed = 3\n", "cfg.toml")
    assert resolve_config_path(str(tmp_path / "cfg")) == tmp_path / "cfg.toml"
    assert _parse(trainer_parser, tmp_path / "cfg").seed == 3


def test_missing_and_broken_files_are_user_errors(trainer_parser, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        _parse(trainer_parser, tmp_path / "nope.toml")
    broken = _write(tmp_path, "seed = = 3\n", "broken.toml")
    with pytest.raises(UserError, match=f"{broken}: not valid TOML"):
        _parse(trainer_parser, broken)


def test_output_config_writes_the_non_default_flags_and_reads_back(trainer_parser, tmp_path):
    target = tmp_path / "out" / "saved"
    cli = ["--max_train_steps", "10", "--xformers", "--optimizer_args", "betas=0.9,0.99", "--learning_rate", "0.005:100, 1e-5"]
    with pytest.raises(SystemExit) as done:
        parse_args_with_config(trainer_parser, ["--config_file", str(target), "--output_config", *cli])
    assert done.value.code == 0
    written = (tmp_path / "out" / "saved.toml").read_text()
    assert "max_train_steps = 10" in written and "xformers = true" in written and "output_config" not in written
    assert "lr_scheduler" not in written  # defaults are left out
    again = _parse(trainer_parser, tmp_path / "out" / "saved.toml")
    assert again == trainer_parser.parse_args([*cli, "--config_file", str(tmp_path / "out" / "saved.toml")])
    with pytest.raises(UserError, match="already exists"):
        parse_args_with_config(trainer_parser, ["--config_file", str(target), "--output_config"])
    with pytest.raises(UserError, match="--output_config needs --config_file"):
        parse_args_with_config(trainer_parser, ["--output_config"])


def test_without_a_config_file_it_is_plain_argparse(trainer_parser):
    args = parse_args_with_config(trainer_parser, ["--seed", "5"])
    assert args.seed == 5 and args.config_file is None


def test_a_typo_of_a_dataset_flag_gets_a_suggestion(trainer_parser, realworld_dir, caplog):
    if "--persistent_data_loader_workers" not in trainer_parser._option_string_actions:
        pytest.skip("the dataset flags are not composed into the trainer parser")
    with caplog.at_level(logging.WARNING):
        _parse(trainer_parser, realworld_dir / "train_configs" / "008_sd-scripts-docker_typo-key-leading-blank.toml")
    assert "persistent_data_loader_worker (did you mean persistent_data_loader_workers?)" in caplog.text
