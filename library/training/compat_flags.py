"""Flags accepted only so that sd-scripts command lines and config files keep working; they change nothing.

This is the one list of them. `--help` marks each "accepted for compatibility, no effect", and the guard test
(tests/test_flags_are_read.py) accepts a flag that no code reads only when it is listed here. To accept another
tool's flag, add a `CompatFlag` below: nothing else needs to change.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

COMPAT_HELP = "accepted for compatibility, no effect"


@dataclass(frozen=True)
class CompatFlag:
    flag: str
    why: str  # why it has no effect here, shown after the compatibility note in --help
    kwargs: dict[str, Any] = field(default_factory=lambda: {"action": "store_true"})

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


TRAINER_COMPAT_FLAGS: tuple[CompatFlag, ...] = (
    CompatFlag("--lowram", "models load straight to their device"),
    CompatFlag("--highvram", "nothing is moved off the GPU between steps to begin with"),
    CompatFlag("--local_rank", "diffusers example; accelerate sets the process rank", {"type": int, "default": None}),
    CompatFlag(
        "--fused_backward_pass",
        "it frees full-model gradients as the optimizer steps; TI's only gradients are the few trained vectors, "
        "and sd-scripts' TI trainer does not fuse either",
    ),
    # the diffusers example's (see diffusers_example_flags.py, docs/migrating.md)
    CompatFlag("--local_rank", "diffusers example's flag; accelerate sets each process's rank",
               {"type": int, "default": None}),
)

GEN_IMG_COMPAT_FLAGS: tuple[CompatFlag, ...] = (
    CompatFlag("--no_preview", "sd-scripts shows --interactive images in an OpenCV window unless given; "
                               "gen_img.py never opens a window"),
)

# dests of every compatibility-only flag of every script (the guard test reads this)
COMPAT_DESTS: frozenset[str] = frozenset(f.dest for f in TRAINER_COMPAT_FLAGS + GEN_IMG_COMPAT_FLAGS)


def compat_help(why: str) -> str:
    return f"{COMPAT_HELP} ({why})"


def add_compat_arguments(parser: argparse.ArgumentParser, flags: tuple[CompatFlag, ...] = TRAINER_COMPAT_FLAGS) -> None:
    """Add the compatibility-only flags the parser does not define yet, in their own --help group."""
    group = parser.add_argument_group("accepted for compatibility (no effect)")
    for compat in flags:
        if compat.flag not in parser._option_string_actions:
            group.add_argument(compat.flag, help=compat_help(compat.why), **compat.kwargs)
