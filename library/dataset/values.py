"""Parsing of dataset values that a flag and a dataset TOML key share (resolution, face crop range).

A leaf module: the flag definitions (arguments.py) and the config reader (config.py) both parse these values the
same way, so neither has to import the other for them.
"""

from __future__ import annotations

from typing import Any


def parse_resolution(value: Any) -> tuple[int, int]:
    """'512', '512,768', 512 or (512, 768) -> (width, height); ValueError with a readable message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"resolution must be 'SIZE' or 'WIDTH,HEIGHT', got {value!r}")
    if isinstance(value, int):
        parts: list[Any] = [value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.replace("x", ",").split(",")]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ValueError(f"resolution must be 'SIZE' or 'WIDTH,HEIGHT', got {value!r}")
    try:
        sizes = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"resolution must be 'SIZE' or 'WIDTH,HEIGHT' with whole numbers, got {value!r}") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) <= 0:
        raise ValueError(f"resolution must be 'SIZE' or 'WIDTH,HEIGHT' with positive numbers, got {value!r}")
    return sizes[0], sizes[1]


def parse_float_pair(value: Any) -> tuple[float, float]:
    """'2.0,4.0' or (2, 4) -> (2.0, 4.0): the --face_crop_aug_range form."""
    parts = value.split(",") if isinstance(value, str) else value
    try:
        low, high = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"expected 'LOW,HIGH' (two numbers), got {value!r}") from None
    return low, high
