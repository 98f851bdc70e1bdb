"""Specification of save_embedding: the layouts written, atomic writes, and that other tools accept our files."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from library.embeddings import read_embedding, save_embedding
from library.errors import UserError


def _sdxl(n=2):
    g = torch.Generator().manual_seed(1)
    return {"clip_l": torch.randn(n, 32, generator=g), "clip_g": torch.randn(n, 64, generator=g)}


def test_sd_safetensors_is_emb_params_with_string_metadata(tmp_path, vectors):
    path = tmp_path / "mychar.safetensors"
    assert save_embedding(path, {"emb_params": vectors}, token="mychar", step=500, metadata={"modelspec.title": "x"}) == [path]
    assert set(load_file(path)) == {"emb_params"}
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"modelspec.title": "x", "ti_token_string": "mychar", "ti_step": "500"}
    emb = read_embedding(path)
    assert (emb.layout, emb.token, emb.step) == ("emb_params", "mychar", 500) and torch.equal(emb.vectors["emb_params"], vectors)


def test_sdxl_safetensors_is_clip_l_and_clip_g(tmp_path):
    path = tmp_path / "mychar.safetensors"
    save_embedding(path, _sdxl(), token="mychar", step=3, format="safetensors")
    assert {k: tuple(v.shape) for k, v in load_file(path).items()} == {"clip_l": (2, 32), "clip_g": (2, 64)}
    assert read_embedding(path).layout == "sdxl"


@pytest.mark.parametrize("fmt, suffix", [("a1111-pt", ".pt"), ("pt", ".pt"), ("ckpt", ".ckpt"), (None, ".pt")])
def test_pt_is_a1111s_dict_and_loads_with_weights_only(tmp_path, vectors, fmt, suffix):
    path = tmp_path / f"mychar{suffix}"
    save_embedding(path, {"emb_params": vectors}, token="mychar", step=9, metadata={"ti_base_model_hash": "0123456789abcdef", "ti_base_model": "v1-5.safetensors"}, format=fmt)
    data = torch.load(path, weights_only=True)  # plain torch, no allow-list: only dicts, tensors, str, int, None
    assert data["string_to_token"] == {"*": 265} and torch.equal(data["string_to_param"]["*"], vectors)
    assert (data["name"], data["step"], data["sd_checkpoint"], data["sd_checkpoint_name"]) == ("mychar", 9, "0123456789", "v1-5")
    assert read_embedding(path).layout == "a1111"


def test_sdxl_pt_holds_only_the_two_tensors(tmp_path):
    # A1111 calls .detach() on every value of an SDXL .pt, so nothing but tensors may be in it
    save_embedding(tmp_path / "x.pt", _sdxl(), token="x", step=1, format="pt")
    assert set(torch.load(tmp_path / "x.pt", weights_only=True)) == {"clip_l", "clip_g"}


def test_diffusers_single_file(tmp_path, vectors):
    save_embedding(tmp_path / "learned_embeds.safetensors", {"emb_params": vectors}, token="<cat-toy>", step=5, format="diffusers")
    assert set(load_file(tmp_path / "learned_embeds.safetensors")) == {"<cat-toy>"}
    save_embedding(tmp_path / "learned_embeds.bin", {"emb_params": vectors}, token="<cat-toy>", format="diffusers")
    assert set(torch.load(tmp_path / "learned_embeds.bin", weights_only=True)) == {"<cat-toy>"}
    emb = read_embedding(tmp_path / "learned_embeds.safetensors")
    assert (emb.layout, emb.token, emb.step) == ("diffusers", "<cat-toy>", 5)


@pytest.mark.parametrize("fmt", ["diffusers", "sdxl-pair"])
def test_sdxl_as_diffusers_is_the_pair(tmp_path, fmt):
    written = save_embedding(tmp_path / "learned_embeds.safetensors", _sdxl(), token="<cat-toy>", format=fmt)
    assert [p.name for p in written] == ["learned_embeds.safetensors", "learned_embeds_2.safetensors"]
    assert tuple(load_file(written[1])["<cat-toy>"].shape) == (2, 64)
    assert read_embedding(written[0]).layout == "diffusers-sdxl-pair"


def test_sdxl_pair_needs_two_encoders(tmp_path, vectors):
    with pytest.raises(UserError, match="needs clip_l and clip_g"):
        save_embedding(tmp_path / "x.safetensors", {"emb_params": vectors}, token="x", format="sdxl-pair")


@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("float", torch.float32), (None, torch.float32)])
def test_save_precision(tmp_path, vectors, precision, dtype):
    save_embedding(tmp_path / "x.safetensors", {"emb_params": vectors}, token="x", dtype=precision)
    assert read_embedding(tmp_path / "x.safetensors").vectors["emb_params"].dtype == dtype


def test_bad_format_suffix_and_precision_are_user_errors(tmp_path, vectors):
    with pytest.raises(UserError, match="unknown embedding format 'onnx'"):
        save_embedding(tmp_path / "x.safetensors", {"emb_params": vectors}, format="onnx")
    with pytest.raises(UserError, match="cannot tell the embedding format"):
        save_embedding(tmp_path / "x.txt", {"emb_params": vectors})
    with pytest.raises(UserError, match="unknown save precision"):
        save_embedding(tmp_path / "x.safetensors", {"emb_params": vectors}, dtype="fp8")


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, vectors, monkeypatch):
    path = tmp_path / "x.safetensors"
    save_embedding(path, {"emb_params": vectors}, token="x", step=1)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError):
        save_embedding(path, {"emb_params": vectors * 2}, token="x", step=2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]


def test_saved_vectors_are_a_copy_not_the_live_parameter(tmp_path):
    param = torch.nn.Parameter(torch.ones(1, 8))
    save_embedding(tmp_path / "x.safetensors", {"emb_params": param}, token="x")
    with torch.no_grad():
        param.add_(1)
    assert torch.equal(read_embedding(tmp_path / "x.safetensors").vectors["emb_params"], torch.ones(1, 8))


# --- other tools accept our files

def _rows(encoder, tokenizer, names):
    ids = tokenizer.convert_tokens_to_ids(names)
    return encoder.get_input_embeddings().weight[ids].detach()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_diffusers_load_textual_inversion_accepts_our_sd_file(tmp_path, vectors, suffix):
    from library.models.tiny import build_tiny_pipeline

    path = tmp_path / f"mychar{suffix}"
    save_embedding(path, {"emb_params": vectors}, token="mychar", step=10)
    pipe = build_tiny_pipeline("sd1")
    pipe.load_textual_inversion(str(path), token="mychar")
    # diffusers names a multi-vector token's extra tokens token_1, token_2, ...
    assert torch.equal(_rows(pipe.text_encoder, pipe.tokenizer, ["mychar", "mychar_1", "mychar_2"]), vectors)
    assert pipe.tokenizer("a mychar photo").input_ids[2] == pipe.tokenizer.convert_tokens_to_ids("mychar")


def test_diffusers_loads_our_sdxl_file_the_documented_way(tmp_path):
    from library.models.tiny import build_tiny_pipeline

    vectors = _sdxl()
    save_embedding(tmp_path / "mychar.safetensors", vectors, token="mychar", step=10)
    state_dict = load_file(tmp_path / "mychar.safetensors")
    pipe = build_tiny_pipeline("sdxl")
    pipe.load_textual_inversion(state_dict["clip_g"], token="mychar", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    pipe.load_textual_inversion(state_dict["clip_l"], token="mychar", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    assert torch.equal(_rows(pipe.text_encoder, pipe.tokenizer, ["mychar", "mychar_1"]), vectors["clip_l"])
    assert torch.equal(_rows(pipe.text_encoder_2, pipe.tokenizer_2, ["mychar", "mychar_1"]), vectors["clip_g"])
