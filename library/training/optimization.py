"""Optimizer and learning-rate schedule from the flags, for the trainable vectors only."""

from __future__ import annotations

import argparse

from library.training.lr_schedulers import build_lr_scheduler, parse_learning_rate
from library.training.optimizers import build_optimizer, optimizer_eval_mode, optimizer_train_mode, scale_learning_rate

__all__ = ["base_learning_rate", "build_optimizer_for", "build_lr_scheduler_for", "optimizer_train_mode", "optimizer_eval_mode"]


def base_learning_rate(args: argparse.Namespace, num_processes: int) -> float:
    """The optimizer's initial LR: a plain number, or the first value of A1111's piecewise schedule."""
    lr = parse_learning_rate(args.learning_rate)
    base = lr if isinstance(lr, float) else lr.initial_rate
    if args.scale_lr:
        base = scale_learning_rate(base, args.gradient_accumulation_steps, args.train_batch_size, num_processes)
    return base


def optimizer_type_for(args: argparse.Namespace) -> str:
    """--optimizer_type, or what sd-scripts' old switches --use_8bit_adam / --use_lion_optimizer ask for."""
    from library.training.optimizers import resolve_optimizer_type

    return resolve_optimizer_type(
        args.optimizer_type, use_8bit_adam=getattr(args, "use_8bit_adam", False), use_lion_optimizer=getattr(args, "use_lion_optimizer", False)
    )


def build_optimizer_for(args: argparse.Namespace, params, learning_rate: float):
    return build_optimizer(optimizer_type_for(args), params, learning_rate, args.optimizer_args or [], max_grad_norm=args.max_grad_norm)


def build_lr_scheduler_for(args: argparse.Namespace, optimizer, max_steps: int):
    return build_lr_scheduler(
        args.lr_scheduler,
        optimizer,
        num_training_steps=max_steps,
        num_warmup_steps=args.lr_warmup_steps,
        num_cycles=args.lr_scheduler_num_cycles,
        power=args.lr_scheduler_power,
        scheduler_type=args.lr_scheduler_type,
        scheduler_args=args.lr_scheduler_args or [],
        learning_rate=args.learning_rate,
        num_decay_steps=getattr(args, "lr_decay_steps", 0) or 0,
        timescale=getattr(args, "lr_scheduler_timescale", None),
        min_lr_ratio=getattr(args, "lr_scheduler_min_lr_ratio", None),
    )
