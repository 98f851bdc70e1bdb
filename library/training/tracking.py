"""Experiment trackers (TensorBoard, Weights & Biases) through accelerate, on sd-scripts' flags.

As sd-scripts (train_util.prepare_accelerator, train_textual_inversion.py): --logging_dir alone logs to
TensorBoard; each run writes under LOGGING_DIR/<--log_prefix><timestamp>; --log_tracker_config is a TOML file
of accelerate `init_kwargs` per tracker; --wandb_run_name names the W&B run; --log_config logs the flags as the
run's config (without secrets and local paths); --wandb_api_key logs in to W&B. The key is a secret:
`sd_scripts_flags.public_args` is what any file, log or tracker may see of the flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from library.training.sd_scripts_flags import public_args  # the flags without secrets (wandb_api_key, ...)

logger = logging.getLogger(__name__)

DEFAULT_TRACKER_NAME = "textual_inversion"  # sd-scripts' train_textual_inversion.py default project name
# sd-scripts' get_sanitized_config_or_none also leaves local paths out of the tracker config (kohya-ss/sd-scripts
# library/train_util.py, 2025): they tell nothing about the run and may be private.
PATH_ARGS = (
    "pretrained_model_name_or_path", "vae", "tokenizer_cache_dir", "train_data_dir", "conditioning_data_dir",
    "reg_data_dir", "output_dir", "logging_dir",
)  # fmt: skip


def trackers_for(args: argparse.Namespace) -> list[str]:
    """Which trackers run: --log_with, or TensorBoard when only --logging_dir is given (sd-scripts' default)."""
    log_with = getattr(args, "log_with", None)
    if log_with is None:
        return ["tensorboard"] if getattr(args, "logging_dir", None) else []
    return ["tensorboard", "wandb"] if log_with == "all" else [log_with]


def run_logging_dir(args: argparse.Namespace, now: float | None = None) -> str | None:
    """LOGGING_DIR/<log_prefix><YYYYmmddHHMMSS>: each run gets its own folder, as in sd-scripts."""
    if not getattr(args, "logging_dir", None):
        return None
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(now))
    return str(Path(args.logging_dir) / f"{args.log_prefix or ''}{stamp}")


def tracker_config(args: argparse.Namespace) -> dict[str, Any] | None:
    """The run's flags for the tracker with --log_config (None without it, as sd-scripts): scalars kept, others as text."""
    if not getattr(args, "log_config", False):
        return None
    return {
        k: (v if v is None or isinstance(v, (bool, int, float, str)) else str(v))
        for k, v in public_args(args).items()
        if k not in PATH_ARGS
    }


def read_tracker_config(path: str) -> dict[str, Any]:
    """--log_tracker_config: a TOML file whose tables are accelerate init_kwargs per tracker, e.g. [wandb] tags = [...]."""
    from library.errors import UserError
    from library.training.config_file import load_toml

    data = load_toml(Path(path))
    bad = [k for k, v in data.items() if not isinstance(v, dict)]
    if bad:
        raise UserError(
            f"--log_tracker_config {path}: top-level keys must be tables named after a tracker ([wandb], [tensorboard]); "
            f"{', '.join(bad)} is not"
        )
    return data


def tracker_init_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """init_kwargs for accelerate's init_trackers: the --log_tracker_config file, plus --wandb_run_name.

    sd-scripts lets the file replace the run name silently; here a name in the file wins with a warning."""
    kwargs: dict[str, Any] = read_tracker_config(args.log_tracker_config) if getattr(args, "log_tracker_config", None) else {}
    name = getattr(args, "wandb_run_name", None)
    if name:
        wandb_kwargs = kwargs.setdefault("wandb", {})
        if "name" in wandb_kwargs and wandb_kwargs["name"] != name:
            logger.warning(
                "--log_tracker_config %s sets [wandb] name = %r, which wins over --wandb_run_name %r",
                args.log_tracker_config, wandb_kwargs["name"], name,
            )
        else:
            wandb_kwargs["name"] = name
    return kwargs


def login_to_wandb(args: argparse.Namespace, logging_dir: str | None) -> None:
    """W&B writes its files under the run's logging folder; --wandb_api_key logs in (the key goes to wandb only)."""
    if "wandb" not in trackers_for(args):
        return
    import wandb

    if logging_dir is not None:
        os.makedirs(logging_dir, exist_ok=True)
        os.environ["WANDB_DIR"] = logging_dir
    if getattr(args, "wandb_api_key", None):
        wandb.login(key=args.wandb_api_key)


def start_tracking(accelerator, args: argparse.Namespace) -> None:
    """Start the trackers on the main process (accelerate logs only from there)."""
    if not accelerator.trackers and trackers_for(args) and accelerator.is_main_process:
        accelerator.init_trackers(
            args.log_tracker_name or DEFAULT_TRACKER_NAME, config=tracker_config(args), init_kwargs=tracker_init_kwargs(args)
        )
