"""Set-up done before any model is loaded: the Accelerator, the weight dtype, the step count."""

from __future__ import annotations

import argparse
import datetime
import math

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, InitProcessGroupKwargs, ProjectConfiguration

from library.errors import UserError
from library.optional_deps import require
from library.training import precision
from library.training.tracking import login_to_wandb, run_logging_dir, trackers_for


def make_accelerator(args: argparse.Namespace) -> Accelerator:
    """An Accelerator for devices, mixed precision, gradient accumulation, multi-GPU and trackers."""
    log_with = trackers_for(args) or None  # flag_rules checked that the packages are there
    logging_dir = run_logging_dir(args)
    login_to_wandb(args, logging_dir)
    # accelerate keeps its settings in process-wide singletons; a second run in the same process (tests, tools that
    # train several embeddings) may ask for other precision or accumulation. The process group itself is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=args.output_dir, logging_dir=logging_dir),
        dataloader_config=DataLoaderConfiguration(non_blocking=True),
        kwargs_handlers=ddp_kwargs_handlers(args) + precision.accelerator_kwargs_handlers(args),
    )
    precision.add_cpu_loss_scaling(accelerator)  # accelerate makes no fp16 scaler/autocast on a CPU
    return accelerator


def ddp_kwargs_handlers(args: argparse.Namespace) -> list:
    """--ddp_timeout (minutes), --ddp_gradient_as_bucket_view, --ddp_static_graph as accelerate kwargs, as sd-scripts
    passes them; nothing when none is set, so accelerate's and PyTorch's defaults apply."""
    handlers: list = []
    if getattr(args, "ddp_timeout", None):
        handlers.append(InitProcessGroupKwargs(timeout=datetime.timedelta(minutes=args.ddp_timeout)))
    if getattr(args, "ddp_gradient_as_bucket_view", False) or getattr(args, "ddp_static_graph", False):
        handlers.append(
            DistributedDataParallelKwargs(
                gradient_as_bucket_view=args.ddp_gradient_as_bucket_view, static_graph=args.ddp_static_graph
            )
        )
    return handlers


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
