"""Validation loss at fixed noise and timesteps, so that overtraining shows as a rising curve."""

from __future__ import annotations

import argparse
import logging

import torch
from torch.utils.data import DataLoader

from library.training.seeding import sample_generators
from library.training.step import training_step

logger = logging.getLogger(__name__)


def validation_loss(val_group, models, family, text_encoders, settings, accelerator, seed: int, snr) -> float:
    """Mean loss over the validation set; each batch uses the same noise and timesteps at every call."""
    val_group.set_epoch(0)
    loader = DataLoader(val_group, batch_size=1, shuffle=False, collate_fn=lambda items: items[0])
    total, count = 0.0, 0
    with torch.no_grad():
        for index, batch in enumerate(loader):
            loss = training_step(batch, models, family, text_encoders, settings, sample_generators(seed, index, len(batch["captions"]), salt=1), accelerator, snr)
            total += loss.item()
            count += 1
    return total / max(count, 1)


def validate_if_due(args: argparse.Namespace, val_group, step: int, models, family, text_encoders, settings, accelerator, seed: int, snr) -> float | None:
    every = getattr(args, "validate_every_n_steps", None)
    if val_group is None or not every or step % every:
        return None
    loss = validation_loss(val_group, models, family, text_encoders, settings, accelerator, seed, snr)
    if accelerator.is_main_process:
        logger.info("step %d: validation loss %.5f", step, loss)
    if args.log_with:
        accelerator.log({f"{args.log_prefix or ''}loss/validation": loss}, step=step)
    return loss
