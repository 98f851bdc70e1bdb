"""Specification of tools/embedding.py: inspect prints what a user needs, convert round-trips bit-exactly."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from library.cli import EXIT_USER_ERROR, run_main
from library.embeddings import read_embedding, save_embedding
from tests.helpers.tools import load_tool

TOOL = Path(__file__).resolve().parents[2] / "tools" / "embedding.py"


@pytest.fixture(scope="module")
def tool():
    module = load_tool("embedding")
    return lambda *argv: run_main(module.main, [str(a) for a in argv])


def _sources(folder: Path) -> dict[str, Path]:
    """One file per layout we write or commonly meet, with distinct dtypes and vector counts."""
    g = torch.Generator().manual_seed(3)
    folder.mkdir()
    sd = torch.randn(3, 32, generator=g)
    sdxl = {"clip_l": torch.randn(2, 32, generator=g), "clip_g": torch.randn(2, 64, generator=g).half()}
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": sd}, "name": "inner", "step": 42, "sd_checkpoint": None, "sd_checkpoint_name": None}, folder / "a1111.pt")
    save_embedding(folder / "embparams.safetensors", {"emb_params": sd.bfloat16()}, token="tok", step=7)
    save_embedding(folder / "learned_embeds.safetensors", {"emb_params": sd[:1]}, token="<cat-toy>", step=3, format="diffusers")
    save_embedding(folder / "sdxl.safetensors", sdxl, token="xl", step=9)
    pair = folder / "pair"
    pair.mkdir()
    save_embedding(pair / "learned_embeds.safetensors", sdxl, token="<xl-toy>", step=11, format="sdxl-pair")
    return {
        "a1111": folder / "a1111.pt",
        "emb_params": folder / "embparams.safetensors",
        "diffusers": folder / "learned_embeds.safetensors",
        "sdxl": folder / "sdxl.safetensors",
        "diffusers-sdxl-pair": pair / "learned_embeds.safetensors",
    }


def _assert_same(a, b, *, step=True, same_dtype=True):
    assert list(a.vectors) == list(b.vectors)
    for slot in a.vectors:
        assert a.vectors[slot].dtype == b.vectors[slot].dtype or not same_dtype
        assert torch.equal(a.vectors[slot].float(), b.vectors[slot].float())  # every value bit-identical
    assert b.trigger == a.trigger
    if step:
        assert (b.token, b.step) == (a.token or a.trigger, a.step)


CASES = [
    ("a1111", "safetensors"),
    ("a1111", "diffusers"),
    ("emb_params", "a1111-pt"),
    ("emb_params", "diffusers"),
    ("diffusers", "a1111-pt"),
    ("diffusers", "safetensors"),
    ("sdxl", "diffusers"),
    ("sdxl", "sdxl-pair"),
    ("sdxl", "a1111-pt"),
    ("diffusers-sdxl-pair", "safetensors"),
    ("a1111", "a1111-png"),  # AUTOMATIC1111's embedding image: write, read back, bit-identical vectors
    ("emb_params", "a1111-png"),
    ("sdxl", "a1111-png"),
]


@pytest.mark.parametrize("layout, to", CASES)
def test_convert_round_trips_bit_exactly(tool, tmp_path, layout, to):
    source = _sources(tmp_path / "in")[layout]
    original = read_embedding(source)
    assert original.layout == layout
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / (source.stem + {"a1111-pt": ".pt", "a1111-png": ".png"}.get(to, ".safetensors"))
    assert tool("convert", source, "--to", to, "--out", out) == 0
    converted = read_embedding(out)
    # an SDXL .pt holds only the two tensors (A1111 reads nothing else), so its token and step are not kept
    # A1111's PNG chunk holds JSON numbers: fp16/bf16 values come back exactly, as float32 (A1111 reads them so too)
    _assert_same(original, converted, step=not (original.is_sdxl and to in ("a1111-pt", "a1111-png")), same_dtype=to != "a1111-png")


def test_convert_default_output_keeps_the_trigger_word_and_refuses_to_overwrite(tool, tmp_path, capsys):
    source = _sources(tmp_path / "in")["a1111"]
    assert tool("convert", source, "--to", "safetensors") == 0
    written = source.with_suffix(".safetensors")
    assert f"wrote {written}" in capsys.readouterr().out and read_embedding(written).trigger == "a1111"
    assert tool("convert", source, "--to", "safetensors") == EXIT_USER_ERROR
    assert "already exists; pass --force" in capsys.readouterr().err
    assert tool("convert", source, "--to", "safetensors", "--force", "--name", "renamed") == 0
    assert read_embedding(written).token == "renamed"


def test_convert_refuses_an_sdxl_pair_from_one_encoder(tool, tmp_path, capsys):
    source = _sources(tmp_path / "in")["emb_params"]
    assert tool("convert", source, "--to", "sdxl-pair") == EXIT_USER_ERROR
    assert "needs an SDXL embedding" in capsys.readouterr().err


def test_inspect_prints_the_fields(tool, tmp_path, capsys):
    sources = _sources(tmp_path / "in")
    assert tool("inspect", sources["a1111"], sources["sdxl"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "layout:       a1111",
        "trigger:      a1111   (the file name; the file's own name: 'inner')",
        "vectors:      3",
        "dims:         3 x 32 float32",
        "step:         42",
        "norms:",
        "non-finite:   none",
        "clip_g:       2 x 64 float16",
        "norms clip_g:",
        "no published SD 1.x / SD 2.x / SDXL model",
        "ti_token_string = xl",
    ):
        assert expected in out


def test_inspect_compares_norms_with_the_model_vocabulary(tool, tmp_path, capsys, tiny_model_dir):
    source = _sources(tmp_path / "in")["a1111"]
    assert tool("inspect", source, "--model", tiny_model_dir("sd1")) == 0
    assert "model vocabulary norms: mean" in capsys.readouterr().out


def test_inspect_reports_unreadable_files_and_exits_2(tool, tmp_path, capsys):
    good = _sources(tmp_path / "in")["a1111"]
    (tmp_path / "junk.pt").write_bytes(b"not a pickle at all")
    assert tool("inspect", tmp_path / "junk.pt", good) == EXIT_USER_ERROR
    captured = capsys.readouterr()
    assert "junk.pt: not an embedding file" in captured.out and "layout:       a1111" in captured.out
    assert "1 of 2 file(s) could not be read" in captured.err


def test_inspect_real_files(tool, realworld_dir, capsys):
    folder = realworld_dir / "embeddings"
    assert tool("inspect", folder / "a1111_fgjd_badhandv4-name-mismatch.pt", folder / "sdxl_kaleidia_SDXL-Detail-2vec.safetensors") == 0
    out = capsys.readouterr().out
    assert "trigger:      a1111_fgjd_badhandv4-name-mismatch   (the file name; the file's own name: 'badhandv3')" in out
    assert "SD 1.x (768); on SDXL it applies to CLIP-L only" in out and "SDXL (clip_l 768 + clip_g 1280)" in out


def test_the_script_runs_standalone(tmp_path):
    source = _sources(tmp_path / "in")["sdxl"]
    result = subprocess.run([sys.executable, str(TOOL), "inspect", str(source)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "layout:       sdxl" in result.stdout
    bad = subprocess.run([sys.executable, str(TOOL), "convert", str(source), "--to", "onnx"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
