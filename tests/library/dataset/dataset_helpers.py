"""Small generated images and dataset params for the dataset tests (imported by the test modules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from library.dataset.params import DatasetGroupParams, DatasetParams, SubsetParams


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0, **save_kwargs) -> Path:
    """A random-noise image of `size` (w, h) in `mode`, saved by extension."""
    rng = np.random.default_rng(seed)
    w, h = size
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2, "CMYK": 4}.get(mode)
    if channels is None:
        raise ValueError(mode)
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    img = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save_kwargs)
    return path


def solid(path: Path, size: tuple[int, int], color=(200, 30, 30), mode: str = "RGB", **save_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **save_kwargs)
    return path


def group_params(*subsets: SubsetParams, **dataset_kwargs) -> DatasetGroupParams:
    dataset_kwargs.setdefault("resolution", (64, 64))
    return DatasetGroupParams(datasets=[DatasetParams(subsets=list(subsets), **dataset_kwargs)], source="test")
