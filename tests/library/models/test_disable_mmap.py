"""Specification of --disable_mmap_load_safetensors: the same tensors and metadata, read without memory-mapping."""

from __future__ import annotations

import pytest
import safetensors
import torch
from safetensors.torch import save_file

from library.errors import UserError
from library.models.checkpoint_files import read_checkpoint


def test_unmapped_reading_gives_the_same_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    tensors = {"a.weight": torch.randn(3, 4), "b.bias": torch.arange(5, dtype=torch.float16), "c": torch.tensor([1, 2])}
    save_file(tensors, str(path), metadata={"modelspec.title": "x"})
    mapped = read_checkpoint(path)

    # safetensors' safe_open memory-maps the file; the unmapped path must not open it that way
    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: pytest.fail("safe_open (mmap) was used"))
    unmapped = read_checkpoint(path, mmap=False)
    assert unmapped.metadata == mapped.metadata == {"modelspec.title": "x"}
    assert unmapped.state_dict.keys() == tensors.keys()
    for key, value in tensors.items():
        assert torch.equal(unmapped.state_dict[key], value) and unmapped.state_dict[key].dtype == value.dtype


def test_a_damaged_file_is_one_clear_error_without_mmap(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserError, match="not a readable .safetensors file"):
        read_checkpoint(path, mmap=False)


@pytest.mark.parametrize("kind", ["single_file", "diffusers_dir"])
def test_load_models_gives_the_same_weights_without_mmap(kind, tiny_single_file, tiny_model_dir, monkeypatch):
    from library.models.loading import load_models

    source = tiny_single_file("sd1") if kind == "single_file" else tiny_model_dir("sd1")
    a = load_models(str(source))
    if kind == "single_file":  # every component comes from the one file, read by read_checkpoint
        monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: pytest.fail("safe_open (mmap) was used"))
    b = load_models(str(source), disable_mmap=True)
    for (key, x), (_, y) in zip(a.unet.state_dict().items(), b.unet.state_dict().items()):
        assert torch.equal(x, y), key
