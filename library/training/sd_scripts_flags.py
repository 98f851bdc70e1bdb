"""sd-scripts' Textual Inversion flags that our trainer took over late, and the ones it accepts only to refuse.

sd-scripts' TI parsers (train_textual_inversion.py / sdxl_train_textual_inversion.py) define 169 (170) flags;
tests/data/sd_scripts_ti_flags.py lists them all and a test parses each here. This module adds the ones the
other argument groups do not have:

- implemented with sd-scripts' meaning: the ModelSpec metadata flags, console logging, state retention,
  --save_n_epoch_ratio, --skip_cache_check, --conditioning_data_dir, --disable_mmap_load_safetensors, --fp8_base
  and the DDP settings;
- accepted but refused when set (`REFUSED`): uploads to the Hugging Face hub, DeepSpeed and --dataset_class,
  each with the reason it cannot apply to Textual Inversion here. `sd_scripts_flag_problems` (one of
  flag_rules' rules) names every such flag given; it never repeats a flag's value, so a hub token is not echoed.
  sd-scripts flags accepted with no effect (--fused_backward_pass) are in compat_flags.py.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import torch

from library.cli import add_logging_arguments
from library.errors import UserError
from library.training.flag_groups import group_adder as _adder


@dataclass(frozen=True)
class UnsupportedFlag:
    """A flag parsed for sd-scripts compatibility that this trainer does not honour, and why."""

    flag: str
    why: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-")


_HUB_WHY = (
    "this suite never contacts the Hugging Face hub while training (it works offline); upload the finished "
    "embedding yourself, e.g. `huggingface-cli upload REPO OUTPUT_DIR/NAME.safetensors`"
)
_DEEPSPEED_WHY = (
    "DeepSpeed ZeRO shards model weights and optimizer state across GPUs, but TI trains only a few token vectors "
    "(kilobytes of optimizer state) and the frozen models are not trained; use plain multi-GPU data parallel "
    "(`accelerate launch --multi_gpu`) instead"
)
_DATASET_CLASS_WHY = (
    "sd-scripts instantiates a user class derived from its own train_util.MinimalDataset, which this suite does "
    "not have, so such a class cannot run here; describe the images with --dataset_config or --train_data_dir"
)

REFUSED: tuple[UnsupportedFlag, ...] = (
    UnsupportedFlag("--huggingface_repo_id", _HUB_WHY),
    UnsupportedFlag("--huggingface_repo_type", _HUB_WHY),
    UnsupportedFlag("--huggingface_path_in_repo", _HUB_WHY),
    UnsupportedFlag("--huggingface_token", _HUB_WHY),
    UnsupportedFlag("--huggingface_repo_visibility", _HUB_WHY),
    UnsupportedFlag("--save_state_to_huggingface", _HUB_WHY),
    UnsupportedFlag("--resume_from_huggingface", _HUB_WHY + "; resume from a local state folder with --resume"),
    UnsupportedFlag("--async_upload", _HUB_WHY),
    UnsupportedFlag("--deepspeed", _DEEPSPEED_WHY),
    UnsupportedFlag("--zero_stage", _DEEPSPEED_WHY),
    UnsupportedFlag("--offload_optimizer_device", _DEEPSPEED_WHY),
    UnsupportedFlag("--offload_optimizer_nvme_path", _DEEPSPEED_WHY),
    UnsupportedFlag("--offload_param_device", _DEEPSPEED_WHY),
    UnsupportedFlag("--offload_param_nvme_path", _DEEPSPEED_WHY),
    UnsupportedFlag("--zero3_init_flag", _DEEPSPEED_WHY),
    UnsupportedFlag("--zero3_save_16bit_model", _DEEPSPEED_WHY),
    UnsupportedFlag("--fp16_master_weights_and_gradients", _DEEPSPEED_WHY),
    UnsupportedFlag("--dataset_class", _DATASET_CLASS_WHY),
)

# store_true flags and typed values among the refused ones; every default is None/False so "set" means "given"
_REFUSED_KWARGS: dict[str, dict] = {
    "--save_state_to_huggingface": {"action": "store_true"},
    "--resume_from_huggingface": {"action": "store_true"},
    "--async_upload": {"action": "store_true"},
    "--deepspeed": {"action": "store_true"},
    "--zero_stage": {"type": int, "default": None, "choices": [0, 1, 2, 3]},
    "--offload_optimizer_device": {"type": str, "default": None, "choices": ["cpu", "nvme"]},
    "--offload_param_device": {"type": str, "default": None, "choices": ["cpu", "nvme"]},
    "--zero3_init_flag": {"action": "store_true"},
    "--zero3_save_16bit_model": {"action": "store_true"},
    "--fp16_master_weights_and_gradients": {"action": "store_true"},
}

# flags whose values are secrets: never logged, echoed or written into an embedding's metadata
SECRET_DESTS = frozenset({"huggingface_token", "hub_token", "wandb_api_key"})  # hub_token: the diffusers example's


def add_model_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """The ModelSpec metadata flags (sd-scripts' sai_model_spec.add_model_spec_arguments), written as modelspec.*."""
    add = _adder(parser, "output and saving")
    add("--metadata_title", type=str, default=None, help="model title in the metadata (default: output_name)")
    add("--metadata_author", type=str, default=None, help="author in the metadata")
    add("--metadata_description", type=str, default=None, help="description in the metadata")
    add("--metadata_license", type=str, default=None, help="license in the metadata")
    add("--metadata_tags", type=str, default=None, help="comma-separated tags in the metadata")
    add("--metadata_usage_hint", type=str, default=None, help="short usage hint in the metadata (modelspec.usage_hint)")
    add("--metadata_thumbnail", type=str, default=None,
        help="thumbnail in the metadata: a data: URL, or an image file that is stored as a data: URL")
    add("--metadata_merged_from", type=str, default=None, help="source models of a merge, in the metadata")
    add("--metadata_trigger_phrase", type=str, default=None,
        help="trigger phrase in the metadata (default: the token string)")
    add("--metadata_preprocessor", type=str, default=None, help="preprocessing used, in the metadata")
    add("--metadata_is_negative_embedding", type=str, default=None,
        help="'true' if this embedding is meant for negative prompts (modelspec.is_negative_embedding)")


def add_sd_scripts_arguments(parser: argparse.ArgumentParser) -> None:
    """Every sd-scripts TI flag the other argument groups lack: implemented ones, then accepted-but-refused ones.

    --disable_mmap_load_safetensors is SDXL-only in sd-scripts; both scripts accept it here."""
    add_logging_arguments(parser)
    add_model_spec_arguments(parser)

    add = _adder(parser, "output and saving")
    add("--save_n_epoch_ratio", type=int, default=None,
        help="save about N embeddings over the run: every floor(epochs / N) epochs (at least 1); overrides "
        "--save_every_n_epochs")
    add("--save_last_n_epochs_state", type=int, default=None,
        help="keep only the last N epoch-wise state folders (overrides --save_last_n_epochs for states)")
    add("--save_last_n_steps_state", type=int, default=None,
        help="keep step-wise state folders only for the last N steps (overrides --save_last_n_steps for states)")

    add = _adder(parser, "latents and masks")
    add("--skip_cache_check", action="store_true",
        help="reuse an existing latent cache file without checking that it still matches the image and settings "
        "(only its existence is checked)")
    add("--conditioning_data_dir", type=str, default=None,
        help="with --masked_loss and --train_data_dir: folder of mask images named like the training images "
        "(a subfolder named like each N_name image folder is used when present)")

    add = _adder(parser, "precision and speed")
    add("--fp8_base", action="store_true",
        help="store the frozen U-Net's weights in float8 (e4m3fn) and upcast each layer to the compute dtype when it "
        "runs: about half the U-Net memory of fp16")
    add("--disable_mmap_load_safetensors", action="store_true",
        help="read .safetensors model files fully into memory instead of memory-mapping them (faster on some "
        "network or WSL file systems)")

    add = _adder(parser, "multi-GPU (DDP)")
    add("--ddp_timeout", type=int, default=None,
        help="timeout of the process group in minutes (none: PyTorch's own)")
    add("--ddp_gradient_as_bucket_view", action="store_true", help="DDP gradient_as_bucket_view=True")
    add("--ddp_static_graph", action="store_true", help="DDP static_graph=True")

    add = _adder(parser, "accepted from sd-scripts, refused for Textual Inversion")
    for refused in REFUSED:
        kwargs = _REFUSED_KWARGS.get(refused.flag, {"type": str, "default": None})
        add(refused.flag, help=f"not supported for Textual Inversion: {refused.why.split(';')[0]}", **kwargs)


def refused_flag_problems(args: argparse.Namespace) -> list[str]:
    """One line per reason, naming every refused flag that was given (never its value: a token is a secret)."""
    reasons: dict[str, list[str]] = {}
    for f in REFUSED:
        if getattr(args, f.dest, None) not in (None, False):
            reasons.setdefault(f.why, []).append(f.flag)
    return [f"{', '.join(flags)}: not supported for Textual Inversion: {why}" for why, flags in reasons.items()]


def refuse_unsupported(args: argparse.Namespace) -> None:
    """One UserError naming every refused flag that was given, with why."""
    lines = refused_flag_problems(args)
    if lines:
        raise UserError("\n".join(lines))


def save_every_n_epochs_for(args: argparse.Namespace, num_epochs: int) -> int | None:
    """--save_n_epoch_ratio N -> floor(epochs / N), at least 1 (sd-scripts); otherwise --save_every_n_epochs."""
    ratio = getattr(args, "save_n_epoch_ratio", None)
    if ratio is not None and ratio > 0:
        return max(1, num_epochs // ratio)
    return args.save_every_n_epochs


def public_args(args: argparse.Namespace) -> dict:
    """The flags without secrets and private attributes: what may go into metadata, logs and trackers."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in SECRET_DESTS}


# --metadata_* flag -> modelspec key; title/author/description/license/tags are passed to build_metadata by name
MODELSPEC_FLAGS = {
    "metadata_usage_hint": "modelspec.usage_hint",
    "metadata_thumbnail": "modelspec.thumbnail",
    "metadata_merged_from": "modelspec.merged_from",
    "metadata_trigger_phrase": "modelspec.trigger_phrase",
    "metadata_preprocessor": "modelspec.preprocessor",
    "metadata_is_negative_embedding": "modelspec.is_negative_embedding",
}


def thumbnail_data_url(value: str) -> str:
    """A data: URL as given, or an image file read into one (sd-scripts' file_to_data_url)."""
    if value.startswith("data:"):
        return value
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--metadata_thumbnail {value}: no such image file (give an image file or a data: URL)")
    mime, _ = mimetypes.guess_type(path.name)
    if not (mime or "").startswith("image/"):
        raise UserError(f"--metadata_thumbnail {value}: not an image file by its extension (.png, .jpg, .webp, ...)")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def modelspec_extras(args: argparse.Namespace) -> dict[str, str]:
    """The `modelspec.*` entries the --metadata_usage_hint ... --metadata_is_negative_embedding flags ask for."""
    extras = {}
    for dest, key in MODELSPEC_FLAGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        extras[key] = thumbnail_data_url(value) if dest == "metadata_thumbnail" else str(value)
    return extras


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def sd_scripts_flag_problems(args: argparse.Namespace) -> list[str]:
    """Refused flags, and values of this module's flags that cannot work (a rule of flag_rules.FLAG_RULES)."""
    problems = refused_flag_problems(args)
    for flag in ("save_n_epoch_ratio", "save_last_n_epochs_state", "save_last_n_steps_state", "ddp_timeout"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            problems.append(f"--{flag} must be at least 1, got {value}")
    if getattr(args, "fp8_base", False):
        from library.models.fp8_storage import fp8_unsupported_reason

        reason = fp8_unsupported_reason(_default_device())
        if reason:
            problems.append(f"--fp8_base cannot work here: {reason}; leave it out")
    if getattr(args, "metadata_thumbnail", None):
        try:
            thumbnail_data_url(args.metadata_thumbnail)
        except UserError as err:
            problems.append(str(err))
    cond = getattr(args, "conditioning_data_dir", None)
    if cond:
        if getattr(args, "dataset_config", None):
            problems.append(
                f"--conditioning_data_dir {cond} would be ignored with --dataset_config (sd-scripts ignores it): set "
                "conditioning_data_dir = '...' on the config's [[datasets.subsets]] instead"
            )
        elif not getattr(args, "masked_loss", False):
            problems.append(
                f"--conditioning_data_dir {cond} is the folder of loss masks; it needs --masked_loss "
                "(Textual Inversion has no other use for conditioning images)"
            )
        elif not getattr(args, "train_data_dir", None) or getattr(args, "in_json", None):
            problems.append(
                f"--conditioning_data_dir {cond} needs --train_data_dir with N_name image folders (not --in_json)"
            )
    return problems


def check_sd_scripts_flags(args: argparse.Namespace) -> None:
    """`sd_scripts_flag_problems` as one UserError (the trainer reports them with every other flag problem)."""
    problems = sd_scripts_flag_problems(args)
    if problems:
        raise UserError("\n".join(problems))
