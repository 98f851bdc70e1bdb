"""What kind of optimizer a run has: schedule-free (train/eval modes) or Adafactor that sets its own step size.

A leaf module: the optimizer factory and the LR scheduler factory both ask these questions, so neither has to
import the other.
"""

from __future__ import annotations

import torch


def is_adafactor_relative_step(optimizer) -> bool:
    """True for a transformers Adafactor that sets its own step size (needs the `adafactor` LR schedule)."""
    from transformers.optimization import Adafactor

    inner = _unwrap(optimizer)
    return isinstance(inner, Adafactor) and bool(inner.defaults.get("relative_step"))


def _unwrap(optimizer):
    # accelerate's AcceleratedOptimizer keeps the real one in `.optimizer`
    seen = 0
    while not isinstance(optimizer, torch.optim.Optimizer) and hasattr(optimizer, "optimizer") and seen < 4:
        optimizer, seen = optimizer.optimizer, seen + 1
    return optimizer


def is_schedule_free(optimizer) -> bool:
    """True for optimizers with train()/eval() modes (schedulefree's), which need switching around sampling/saving."""
    inner = _unwrap(optimizer)
    return callable(getattr(inner, "train", None)) and callable(getattr(inner, "eval", None))


def optimizer_train_mode(optimizer) -> None:
    """Put a schedule-free optimizer in train mode (before training steps); no-op for other optimizers."""
    if is_schedule_free(optimizer):
        _unwrap(optimizer).train()


def optimizer_eval_mode(optimizer) -> None:
    """Put a schedule-free optimizer in eval mode (before sampling, validation or saving); no-op for others."""
    if is_schedule_free(optimizer):
        _unwrap(optimizer).eval()
