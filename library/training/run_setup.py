"""Checks and set-up done before any model is loaded: fail fast on flags this machine cannot honour."""

from __future__ import annotations

import argparse
import math

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

from library.errors import UserError
from library.optional_deps import require


def check_flags(args: argparse.Namespace, *, sdxl: bool) -> None:
    """Refuse combinations that would fail later (after minutes of loading) with a clear reason now."""
    cuda = torch.cuda.is_available()
    if args.mixed_precision == "fp16" and not cuda:
        raise UserError("--mixed_precision fp16 needs a CUDA GPU (half-precision convolutions are not supported on CPU); use --mixed_precision bf16 or no")
    if getattr(args, "full_fp16", False) and args.mixed_precision != "fp16":
        raise UserError("--full_fp16 requires --mixed_precision fp16")
    if getattr(args, "full_bf16", False) and args.mixed_precision != "bf16":
        raise UserError("--full_bf16 requires --mixed_precision bf16")
    if getattr(args, "xformers", False):
        if not cuda:
            raise UserError("--xformers needs a CUDA GPU; leave it out to use PyTorch's scaled-dot-product attention (--sdpa, the default)")
        require("xformers", "--xformers")
    if sdxl and getattr(args, "ti_text_encoders", None):
        wanted = {part.strip().lower() for part in args.ti_text_encoders.split(",") if part.strip()}
        if not wanted or wanted - {"l", "g"}:
            raise UserError(f"--ti_text_encoders takes 'l', 'g' or 'l,g' (got {args.ti_text_encoders!r})")
    if sdxl and (getattr(args, "cache_text_encoder_outputs", False) or getattr(args, "cache_text_encoder_outputs_to_disk", False)):
        raise UserError("--cache_text_encoder_outputs cannot work for Textual Inversion: the text encoders' outputs change as the new token vectors train")
    if args.cache_latents and (args.color_aug or args.random_crop):
        raise UserError("--cache_latents cannot be combined with --color_aug or --random_crop (cached latents are computed once); drop one of them")
    if args.max_token_length not in (None, 75, 150, 225):
        raise UserError(f"--max_token_length must be 75, 150 or 225 (got {args.max_token_length})")
    if not args.token_string:
        raise UserError("--token_string is required: the word that stands for your concept in captions, e.g. 'mychar4'")
    if args.num_vectors_per_token < 1:
        raise UserError(f"--num_vectors_per_token must be at least 1 (got {args.num_vectors_per_token})")
    check_run_values(args)


def check_run_values(args: argparse.Namespace) -> None:
    """Values argparse accepts but no run can use: found now, not at the first save or the last step (issue 19)."""
    from library.training.preflight import check_output_name

    window = token_window(args)
    if args.num_vectors_per_token > window:
        raise UserError(
            f"--num_vectors_per_token {args.num_vectors_per_token} cannot fit the {window}-token window of a caption "
            f"(--max_token_length {args.max_token_length or 75}); use at most {window} vectors, or --max_token_length 150 / 225"
        )
    for flag in ("max_train_epochs", "save_every_n_steps", "save_every_n_epochs", "save_last_n_steps", "save_last_n_epochs"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise UserError(f"--{flag} must be at least 1, got {value}; leave it out to turn it off")
    if args.max_grad_norm is not None and not (args.max_grad_norm >= 0 and math.isfinite(args.max_grad_norm)):
        raise UserError(f"--max_grad_norm must be 0 (no clipping) or a positive number, got {args.max_grad_norm}")
    if args.learning_rate is not None and not (args.learning_rate >= 0 and math.isfinite(args.learning_rate)):
        raise UserError(f"--learning_rate must be a finite number >= 0, got {args.learning_rate}")
    check_output_name(args.output_name)


def token_window(args: argparse.Namespace) -> int:
    """Tokens a caption can hold (without its start/end tokens): 75, or --max_token_length (150, 225)."""
    return args.max_token_length or 75


def make_accelerator(args: argparse.Namespace) -> Accelerator:
    """An Accelerator for devices, mixed precision, gradient accumulation, multi-GPU and trackers."""
    log_with = None
    if args.log_with and args.logging_dir is None and args.log_with != "wandb":
        raise UserError("--log_with needs --logging_dir (where tensorboard writes its logs)")
    if args.log_with in ("tensorboard", "all"):
        require("tensorboard", "--log_with tensorboard")
    if args.log_with in ("wandb", "all"):
        require("wandb", "--log_with wandb")
    if args.log_with:
        log_with = ["tensorboard", "wandb"] if args.log_with == "all" else [args.log_with]
    # accelerate keeps its settings in process-wide singletons; a second run in the same process (tests, tools that
    # train several embeddings) may ask for other precision or accumulation. The process group itself is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=args.logging_dir),
        dataloader_config=DataLoaderConfiguration(non_blocking=True),
    )


def weight_dtype_for(args: argparse.Namespace) -> torch.dtype:
    """Frozen weights are stored in the mixed-precision dtype; the trained vectors always stay fp32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)


def total_steps(args: argparse.Namespace, batches_per_epoch: int, num_processes: int) -> tuple[int, int, int]:
    """(optimizer steps per epoch, epochs, total optimizer steps); --max_train_epochs wins over --max_train_steps."""
    per_epoch = max(1, math.ceil(batches_per_epoch / num_processes / args.gradient_accumulation_steps))
    if args.max_train_epochs:
        steps = per_epoch * args.max_train_epochs
    else:
        steps = args.max_train_steps
    epochs = math.ceil(steps / per_epoch)
    return per_epoch, epochs, steps
