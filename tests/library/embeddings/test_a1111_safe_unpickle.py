"""Every torch pickle we write passes AUTOMATIC1111's safe-unpickle check (its rule: tests/helpers/a1111.py).

Covered: save_embedding's a1111-pt (`pt`, `ckpt`, the trainer's --save_model_as values) and diffusers `.bin`,
SD and SDXL, fp32/fp16/bf16, and `tools/embedding.py convert --to a1111-pt / diffusers` with a `.bin` output.
Each file must also come back bit-identically through `torch.load(weights_only=True)` and our reader.
"""

from pathlib import Path

import pytest
import torch

from library.cli import run_main
from library.embeddings import read_embedding, save_embedding
from tests.helpers.a1111 import OLD_ZIP_NAME_PATTERN, a1111_refusal
from tests.helpers.tools import load_tool


def _sd(dtype=torch.float32):
    return {"emb_params": torch.randn(3, 32, generator=torch.Generator().manual_seed(5)).to(dtype)}


def _sdxl(dtype=torch.float32):
    g = torch.Generator().manual_seed(6)
    return {"clip_l": torch.randn(2, 32, generator=g).to(dtype), "clip_g": torch.randn(2, 64, generator=g).to(dtype)}


def _assert_passes_a1111(path: Path) -> None:
    assert a1111_refusal(path) is None, a1111_refusal(path)
    assert a1111_refusal(path, names_pattern=OLD_ZIP_NAME_PATTERN) is None


def test_the_rule_refuses_torch_2_zip_files_and_foreign_globals(tmp_path):
    # the rule can fail: torch 2.x's default zip writer adds entries A1111 does not allow
    torch.save({"emb_params": torch.zeros(1, 4)}, tmp_path / "zipped.pt")
    assert "bad file inside zipped.pt: zipped/.format_version" in a1111_refusal(tmp_path / "zipped.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt", _use_new_zipfile_serialization=False)
    assert "/print' is forbidden" in a1111_refusal(tmp_path / "evil.pt")


@pytest.mark.parametrize("fmt, suffix", [("pt", ".pt"), ("ckpt", ".ckpt"), ("a1111-pt", ".pt"), ("diffusers", ".bin")])
@pytest.mark.parametrize("family", ["sd1", "sdxl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_written_pickles_pass_a1111_and_read_back_bit_identically(tmp_path, fmt, suffix, family, dtype):
    vectors = _sd(dtype) if family == "sd1" else _sdxl(dtype)
    written = save_embedding(tmp_path / f"mychar4{suffix}", vectors, token="mychar4", step=12, format=fmt)
    assert len(written) == (2 if fmt == "diffusers" and family == "sdxl" else 1)
    for path in written:
        _assert_passes_a1111(path)
        raw = torch.load(path, weights_only=True)
        tensors = [v for v in raw.values() if isinstance(v, torch.Tensor)] or list(raw["string_to_param"].values())
        expected = list(vectors.values()) if len(written) == 1 else [vectors["clip_l" if path == written[0] else "clip_g"]]
        assert len(tensors) == len(expected) and all(torch.equal(t, e) and t.dtype == dtype for t, e in zip(tensors, expected))
    emb = read_embedding(written[0])
    assert emb.vectors.keys() == vectors.keys()
    for slot, tensor in vectors.items():
        assert torch.equal(emb.vectors[slot], tensor)


def test_no_temporary_name_is_left_inside_a_file(tmp_path):
    # the zip format stored the (temporary) file name as its inner folder; the legacy format stores no name at all
    path = save_embedding(tmp_path / "mychar4.pt", _sd(), token="mychar4", format="pt")[0]
    data = path.read_bytes()
    assert not data.startswith(b"PK") and b".tmp" not in data and b"mychar4.pt." not in data


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
@pytest.mark.parametrize("to, out_name", [("a1111-pt", "conv.pt"), ("diffusers", "conv.bin")])
def test_converted_pickles_pass_a1111(tmp_path, family, to, out_name):
    vectors = _sd() if family == "sd1" else _sdxl()
    source = save_embedding(tmp_path / "src.safetensors", vectors, token="src", step=3)[0]
    tool = load_tool("embedding")
    assert run_main(tool.main, ["convert", str(source), "--to", to, "--out", str(tmp_path / out_name)]) == 0
    outputs = sorted(tmp_path.glob("conv*"))
    assert len(outputs) == (2 if to == "diffusers" and family == "sdxl" else 1)
    for path in outputs:
        _assert_passes_a1111(path)
    emb = read_embedding(tmp_path / out_name)
    for slot, tensor in vectors.items():
        assert torch.equal(emb.vectors[slot], tensor)
