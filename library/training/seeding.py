"""Per-step random generators: a resumed run draws exactly the noise an uninterrupted one would."""

from __future__ import annotations

import torch


def step_generator(seed: int, step: int, process_index: int = 0, salt: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, step, process, salt), independent of everything drawn before."""
    mixed = (seed * 1_000_003 + step * 7_919 + process_index * 104_729 + salt * 15_485_863) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def sample_generators(
    seed: int, step: int, batch_size: int, process_index: int = 0, num_processes: int = 1, micro_step: int = 0, salt: int = 0
) -> list[torch.Generator]:
    """One generator per sample of a micro-batch, keyed by the sample's position in the global batch.

    The position counts across accumulation steps and processes, so one process with batch 2, two processes
    with batch 1, and batch 1 with two accumulation steps all draw the same noise for the same global batch.
    """
    first = (micro_step * num_processes + process_index) * batch_size
    return [step_generator(seed, step, first + i, salt) for i in range(batch_size)]
