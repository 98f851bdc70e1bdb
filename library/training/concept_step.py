"""One lockstep step of several concepts (issue 17): each concept's batch, one forward pass per resolution.

Each concept's batch draws its noise and timesteps exactly as its own single-concept run would (the same
per-sample generators), and the loss is the sum of the concepts' own mean losses: the gradient reaching a
concept's vectors is the one its single run would compute, since no other concept's caption holds its tokens.
Batches of one shape (and both cached or both uncached) are concatenated and run through the UNet together,
which is where a several-concept run saves time over separate runs.
"""

from __future__ import annotations

from typing import Callable

import torch

from library.training.seeding import sample_generators
from library.training.step import StepSettings, per_sample_losses

_CONCAT = ("images", "latents", "loss_weights", "alpha_masks", "original_sizes_hw", "crop_top_lefts", "target_sizes_hw", "flipped")


def _shape_key(batch: dict) -> tuple:
    pixels = batch["latents"] if batch["latents"] is not None else batch["images"]
    return batch["latents"] is not None, tuple(pixels.shape[1:]), batch["alpha_masks"] is not None


def merge_batches(batches: list[dict]) -> list[tuple[dict, list[int], list[int]]]:
    """Concept batches grouped into forward passes: (merged batch, sizes of its concept batches, their concepts)."""
    groups: dict[tuple, list[dict]] = {}
    for batch in batches:
        groups.setdefault(_shape_key(batch), []).append(batch)
    merged = []
    for members in groups.values():
        sizes, concepts = [len(m["captions"]) for m in members], [m["concept"] for m in members]
        if len(members) == 1:
            merged.append((members[0], sizes, concepts))
            continue
        batch = {key: (None if members[0][key] is None else torch.cat([m[key] for m in members])) for key in _CONCAT}
        batch["captions"] = [c for m in members for c in m["captions"]]
        batch["image_paths"] = [p for m in members for p in m["image_paths"]]
        merged.append((batch, sizes, concepts))
    return merged


def lockstep_step(batches: list[dict], models, family, text_encoders, settings: StepSettings, accelerator, snr: torch.Tensor, *,
                  seed: int, step: int, micro_step: int = 0,
                  backward: Callable[[torch.Tensor], None] | None = None) -> tuple[torch.Tensor, dict[int, float]]:
    """(sum of the concepts' mean losses, {concept: its mean loss}) for one lockstep step.

    With `backward` (--separate_concept_passes) every concept batch runs alone and `backward` is called on its loss
    before the next one runs, so only one batch's activations are alive at a time; the returned sum is then detached.
    """
    passes = merge_batches(batches) if backward is None else [(batch, [len(batch["captions"])], [batch["concept"]]) for batch in batches]
    losses: list[torch.Tensor] = []
    order: list[int] = []
    for batch, sizes, concepts in passes:
        order += concepts
        # each concept's samples keep the generators of their own run: positions restart at every concept batch
        generators = [g for n in sizes for g in sample_generators(seed, step, n, accelerator.process_index, accelerator.num_processes, micro_step)]
        per_sample = per_sample_losses(batch, models, family, text_encoders, settings, generators, accelerator, snr)
        parts = [part.mean() for part in per_sample.split(sizes)]
        if backward is not None:
            backward(torch.stack(parts).sum())
            parts = [part.detach() for part in parts]
        losses += parts
    by_concept = {concept: loss.detach().item() for concept, loss in zip(order, losses)}
    return torch.stack(losses).sum(), by_concept
