"""The low-memory diffusers loader gives exactly what from_pretrained gives, and steps aside when it cannot."""

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from library.models.low_memory import load_diffusers_model_low_memory, read_safetensors
from library.models.tiny import build_tiny_components


def _saved(tmp_path, name):
    part = build_tiny_components("sdxl", seed=3)[name]
    part.save_pretrained(str(tmp_path / name))
    return tmp_path / name


def test_converted_load_matches_from_pretrained(tmp_path):
    for name, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL)):
        folder = _saved(tmp_path, name)
        ours = load_diffusers_model_low_memory(cls, folder, torch.bfloat16)
        theirs = cls.from_pretrained(str(folder), torch_dtype=torch.bfloat16)
        assert ours is not None and ours.dtype == torch.bfloat16 and not ours.training
        mine, ref = ours.state_dict(), theirs.state_dict()
        assert mine.keys() == ref.keys()
        assert all(torch.equal(mine[k], ref[k]) for k in ref), name
        assert dict(ours.config) == dict(theirs.config)


def test_steps_aside_without_conversion_or_with_unknown_keys(tmp_path):
    folder = _saved(tmp_path, "unet")
    assert load_diffusers_model_low_memory(UNet2DConditionModel, folder, torch.float32) is None  # stored fp32 already
    assert load_diffusers_model_low_memory(UNet2DConditionModel, tmp_path / "missing", torch.bfloat16) is None
    state = read_safetensors(folder / "diffusion_pytorch_model.safetensors")
    from safetensors.torch import save_file

    save_file({**state, "extra.weight": torch.zeros(1)}, str(folder / "diffusion_pytorch_model.safetensors"))
    assert load_diffusers_model_low_memory(UNet2DConditionModel, folder, torch.bfloat16) is None


def test_read_safetensors_keeps_integer_tensors_and_converts_floats(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.arange(6, dtype=torch.int64).reshape(2, 3), "b": torch.randn(4, 5), "c": torch.zeros(0)}, str(tmp_path / "x.safetensors"))
    out = read_safetensors(tmp_path / "x.safetensors", torch.float16)
    assert out["a"].dtype == torch.int64 and out["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert out["b"].dtype == torch.float16 and out["b"].shape == (4, 5)
    assert out["c"].numel() == 0


def test_a_file_cut_short_is_refused_naming_it_never_read_as_zeros(tmp_path):
    """Issue 19: half a UNet file used to load with the missing tensors silently zero."""
    import pytest

    from library.models.low_memory import IncompleteFile

    folder = _saved(tmp_path, "unet")
    weights = folder / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(IncompleteFile, match=r"diffusion_pytorch_model.safetensors: the file is cut short: \d+ of \d+ bytes, \d+ of \d+ tensors missing"):
        read_safetensors(weights, torch.bfloat16)
    with pytest.raises(IncompleteFile, match="cut short"):
        load_diffusers_model_low_memory(UNet2DConditionModel, folder, torch.bfloat16)


def test_a_whole_file_missing_some_of_the_models_tensors_is_refused(tmp_path):
    import pytest
    from safetensors.torch import load_file, save_file

    from library.models.low_memory import IncompleteFile

    folder = _saved(tmp_path, "unet")
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    save_file(dict(list(state.items())[: len(state) // 2]), str(weights))
    with pytest.raises(IncompleteFile, match=r"of the model's \d+ tensors are missing"):
        load_diffusers_model_low_memory(UNet2DConditionModel, folder, torch.bfloat16)
