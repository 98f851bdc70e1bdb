"""Validation loss at fixed noise and timesteps, so that overtraining shows as a rising curve.

When it runs follows sd-scripts (train_network.py): with a validation split, at the end of every epoch unless
--validate_every_n_epochs N asks for every Nth, and also every --validate_every_n_steps N optimizer steps when
given. --max_validation_steps N limits each validation to its first N batches.
"""

from __future__ import annotations

import argparse
import logging

import torch
from torch.utils.data import DataLoader

from library.training.seeding import sample_generators
from library.training.step import training_step

logger = logging.getLogger(__name__)


def validation_loss(val_group, models, family, text_encoders, settings, accelerator, seed: int, snr, max_batches: int | None = None) -> float:
    """Mean loss over the validation set (its first `max_batches` batches); the same noise and timesteps every call."""
    val_group.set_epoch(0)
    loader = DataLoader(val_group, batch_size=1, shuffle=False, collate_fn=lambda items: items[0])
    total, count = 0.0, 0
    with torch.no_grad():
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            loss = training_step(batch, models, family, text_encoders, settings, sample_generators(seed, index, len(batch["captions"]), salt=1), accelerator, snr)
            total += loss.item()
            count += 1
    return total / max(count, 1)


def step_validation_due(args: argparse.Namespace, step: int) -> bool:
    every = getattr(args, "validate_every_n_steps", None)
    return bool(every) and step % every == 0


def epoch_validation_due(args: argparse.Namespace, epoch: int) -> bool:
    """`epoch` counts completed epochs from 1; without --validate_every_n_epochs every epoch validates."""
    every = getattr(args, "validate_every_n_epochs", None)
    return every is None or epoch % every == 0


class Validator:
    """Runs and logs the validation loss when the schedule flags say so; does nothing without a validation split."""

    def __init__(self, args: argparse.Namespace, val_group, models, family, text_encoders, settings, accelerator, seed: int, snr):
        self.args, self.val_group = args, val_group
        self._run = lambda: validation_loss(
            val_group, models, family, text_encoders, settings, accelerator, seed, snr, args.max_validation_steps
        )
        self.accelerator = accelerator
        self.losses: list[tuple[int, float]] = []  # (step, loss), for callers and tests

    def after_step(self, step: int) -> float | None:
        if self.val_group is None or not step_validation_due(self.args, step):
            return None
        return self._validate(step, f"step {step}")

    def after_epoch(self, epoch: int, step: int) -> float | None:
        if self.val_group is None or not epoch_validation_due(self.args, epoch):
            return None
        return self._validate(step, f"epoch {epoch} (step {step})")

    def _validate(self, step: int, when: str) -> float:
        loss = self._run()
        self.losses.append((step, loss))
        if self.accelerator.is_main_process:
            logger.info("%s: validation loss %.5f", when, loss)
        if self.accelerator.trackers:
            self.accelerator.log({"loss/validation": loss}, step=step)
        return loss
