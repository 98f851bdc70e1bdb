"""Specification of the trainer's flags: sd-scripts' names and defaults, composable groups, checked combinations."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import pytest

from library.errors import UserError
from library.training.arguments import (
    add_model_arguments,
    add_textual_inversion_arguments,
    add_training_arguments,
)
from library.training.compat_flags import add_compat_arguments
from library.training.flag_rules import FlagError, check_training_flags

DOC = Path(__file__).resolve().parents[3] / "docs" / "training_options.md"


def _own_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    add_training_arguments(parser)
    add_textual_inversion_arguments(parser)
    add_compat_arguments(parser)
    return parser


def test_defaults_are_sd_scripts_defaults(trainer_parser):
    args = trainer_parser.parse_args([])
    assert args.max_train_steps == 1600 and args.learning_rate == 2e-6 and args.max_grad_norm == 1.0
    assert args.lr_scheduler == "constant" and args.lr_warmup_steps == 0 and args.lr_scheduler_num_cycles == 1
    assert args.mixed_precision == "no" and args.gradient_accumulation_steps == 1 and args.seed is None
    assert args.multires_noise_discount == 0.3 and args.loss_type == "l2" and args.huber_schedule == "snr" and args.huber_c == 0.1
    assert args.sample_sampler == "ddim" and args.max_token_length is None and args.num_vectors_per_token == 1
    assert args.save_model_as == "safetensors"  # ours; sd-scripts' TI saves .pt by default


def test_flags_parse_as_on_the_sd_scripts_command_line(trainer_parser):
    args = trainer_parser.parse_args(
        "--optimizer_type AdamW8bit --optimizer_args weight_decay=0.1 betas=0.9,0.99 --lr_warmup_steps 0.05 "
        "--max_token_length 225 --token_string mychar --init_word girl --num_vectors_per_token 4 --use_object_template".split()
    )
    assert args.optimizer_args == ["weight_decay=0.1", "betas=0.9,0.99"] and args.lr_warmup_steps == 0.05
    assert args.max_token_length == 225 and args.num_vectors_per_token == 4 and args.use_object_template


def test_a_bad_learning_rate_is_a_usage_error_naming_the_piece(trainer_parser, capsys):
    with pytest.raises(SystemExit) as err:
        trainer_parser.parse_args(["--learning_rate", "0.005:1oo, 1e-5"])
    assert err.value.code == 2
    stderr = capsys.readouterr().err
    assert "--learning_rate" in stderr and "'0.005:1oo'" in stderr


def test_groups_compose_without_conflicts():
    parser = _own_parser()
    add_training_arguments(parser)  # adding again skips what exists instead of raising
    add_model_arguments(parser)
    assert parser.parse_args(["--seed", "1"]).seed == 1


def _validated(parser, *cli):
    args = parser.parse_args(["--token_string", "mychar", *cli])
    check_training_flags(args, sdxl=False, dataset=False)
    return args


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        (["--adaptive_noise_scale", "0.01"], "--adaptive_noise_scale needs --noise_offset"),
        (["--scale_v_pred_loss_like_noise_pred"], "only with --v_parameterization"),
        (["--v_pred_like_loss", "0.1", "--v_parameterization"], "cannot be used with --v_parameterization"),
        (["--use_object_template", "--use_style_template"], "--use_object_template and --use_style_template"),
        (["--full_fp16"], "--full_fp16 needs --mixed_precision fp16"),
        (["--loss_type", "huber", "--huber_c", "0"], "--huber_c must be positive"),
        (["--max_train_steps", "0"], "--max_train_steps must be at least 1"),
        (["--debiased_estimation_loss", "--zero_terminal_snr"], "needs --v_parameterization"),
    ],
)
def test_rejected_combinations_name_the_flags(cli, message):
    with pytest.raises(UserError, match=re.escape(message)):
        _validated(_own_parser(), *cli)


def test_non_positive_sample_intervals_are_disabled(caplog):
    with caplog.at_level(logging.WARNING):
        args = _validated(_own_parser(), "--sample_every_n_steps", "0")
    assert args.sample_every_n_steps is None and "disabled" in caplog.text
    args = _validated(_own_parser(), "--mixed_precision", "bf16", "--full_bf16", "--v_parameterization", "--zero_terminal_snr")
    assert args.full_bf16


def test_every_flag_is_documented():
    doc = DOC.read_text(encoding="utf-8")
    flags = [s for a in _own_parser()._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
    missing = [f for f in flags if f"`{f}`" not in doc]
    assert not missing, f"docs/training_options.md does not describe {missing}"
