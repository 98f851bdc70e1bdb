"""The world every adversarial case starts from: a tiny SD1 model, a good dataset, and a good embedding already
sitting in the output folder under the name the run would write (it must survive every failed run unchanged)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.helpers.training import make_ti_dataset, train_argv


@dataclass
class Ctx:
    tmp: Path
    model: Path  # tiny SD1 diffusers folder (read only: copy it before damaging it)
    data: Path  # dataset TOML of 4 captioned toy images
    images: Path
    out: Path  # output folder holding the good embedding ti.safetensors
    good: Path
    good_bytes: bytes

    def argv(self, *extra: str, steps: int = 2, model: Path | None = None) -> list[str]:
        """The good trainer command line, with `extra` flags appended (later flags win in argparse)."""
        return train_argv(model or self.model, self.data, self.out, *extra, steps=steps)

    def without(self, argv: list[str], *flags: str) -> list[str]:
        return [a for a in argv if not a.startswith(flags)]

    def model_copy(self) -> Path:
        target = self.tmp / "model_copy"
        if not target.exists():
            shutil.copytree(self.model, target)
        return target

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def good_is_untouched(self) -> bool:
        return self.good.read_bytes() == self.good_bytes


@pytest.fixture(scope="session")
def adversarial_world(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("adversarial_world")
    data = make_ti_dataset(root)
    from library.embeddings import save_embedding

    good = root / "good.safetensors"
    save_embedding(good, {"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(3))}, token="toyxstar")
    return tiny_model_dir("sd1"), data, good


@pytest.fixture
def ctx(adversarial_world, tmp_path) -> Ctx:
    model, data, good = adversarial_world
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(good, out / "ti.safetensors")
    return Ctx(tmp_path, model, data, data.parent / "images", out, out / "ti.safetensors", good.read_bytes())
