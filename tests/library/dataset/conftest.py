"""Fixtures for the dataset tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_helpers import write_image


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """Four images of different shapes with .txt captions containing 'sks'."""
    d = tmp_path / "images"
    for i, size in enumerate([(64, 64), (96, 64), (64, 128), (80, 80)]):
        write_image(d / f"img{i}.png", size, seed=i)
        (d / f"img{i}.txt").write_text(f"sks, tag{i}, red, blue")
    return d
