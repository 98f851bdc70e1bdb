"""Per-step random generators: a resumed run draws exactly the noise an uninterrupted one would."""

from __future__ import annotations

import torch


def step_generator(seed: int, step: int, process_index: int = 0, salt: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, step, process, salt), independent of everything drawn before."""
    mixed = (seed * 1_000_003 + step * 7_919 + process_index * 104_729 + salt * 15_485_863) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)
