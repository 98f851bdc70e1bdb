"""Shared fixtures: tiny real models saved once per session, paths to the shared real-world files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never touch the hub
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO_ROOT = Path(__file__).resolve().parents[1]
REALWORLD = REPO_ROOT.parent / "shared" / "realworld"


@pytest.fixture(scope="session")
def realworld_dir() -> Path:
    """`../shared/realworld` (present in CI); tests that need it skip with a reason elsewhere."""
    if not REALWORLD.is_dir():
        pytest.skip("../shared/realworld is not present beside the repository")
    return REALWORLD


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A function family -> path of a tiny diffusers model directory, saved once per test session."""
    from library.models.tiny import save_tiny_model

    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            cache[family] = save_tiny_model(family, tmp_path_factory.mktemp(f"tiny_{family}"))
        return cache[family]

    return get


@pytest.fixture(scope="session")
def toy_demo_out(tmp_path_factory) -> Path:
    """The folder of one tools/demo.py run on the shipped toy model (embedding, samples, loss chart), run once."""
    from tests.helpers.tools import TOY_DEMO_STEPS, load_tool

    out = tmp_path_factory.mktemp("toy_demo")
    load_tool("demo").main(["--out", str(out), "--steps", str(TOY_DEMO_STEPS)])
    return out
