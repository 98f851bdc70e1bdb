"""Specification of half-precision training on a CPU: fp16 with loss scaling, full fp16/bf16, --no_half_vae, NaN latents.

accelerate 1.16 gives fp16 a GradScaler only on GPU-like devices; the trainer adds the same scaler on a CPU, so the
whole fp16 path (scaled backward, unscaled clipping, skipped overflowing steps, scaler state in the resume state)
runs here on the tiny real models.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import train_textual_inversion
from library.cli import run_main
from library.errors import UserError
from library.models.tiny import build_tiny_components
from library.training import precision
from library.training.flag_rules import flag_problems
from library.training.parser import parse_training_args, run_training as run
from library.training.step import encode_images
from tests.helpers.training import make_ti_dataset, train_argv



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_ti_dataset(tmp_path_factory.mktemp("fp16_data"))


@pytest.mark.training
def test_fp16_on_cpu_trains_fp32_vectors_behind_fp16_weights_with_a_loss_scaler(tiny_model_dir, tmp_path, dataset, capsys, caplog):
    caplog.set_level("INFO")
    result = run(train_argv(tiny_model_dir("sd1"), dataset, tmp_path, "--mixed_precision=fp16", "--max_grad_norm=1.0"))
    models, tokens = result.models, result.tokens
    assert models.unet.dtype == torch.float16 and models.text_encoders[0].get_input_embeddings().base.weight.dtype == torch.float16
    assert all(p.dtype == torch.float32 for p in tokens.parameters())
    vectors = tokens.vectors_by_slot()["emb_params"]
    assert torch.isfinite(vectors).all() and result.global_step == 4 and result.overflow_skipped_steps == 0
    assert "loss scaling:     fp16 loss scaling (scale 65536)" in capsys.readouterr().out
    assert "0 of 4 optimizer step(s) skipped because their gradients overflowed" in caplog.text


@pytest.mark.training
def test_an_overflowing_fp16_step_is_skipped_not_written_into_the_vectors(tiny_model_dir, tmp_path, dataset, monkeypatch, caplog):
    model = tiny_model_dir("sd1")
    # a learning rate of 0 steps the optimizer without moving the vectors: the reference for "never written"
    still = run(train_argv(model, dataset, tmp_path / "lr0", "--mixed_precision=fp16", "--learning_rate=0", steps=3))
    monkeypatch.setattr(precision, "INIT_SCALE", 2.0**100)  # scaled gradients overflow fp16 (max 65504) at once
    caplog.set_level("INFO")
    result = run(train_argv(model, dataset, tmp_path / "big", "--mixed_precision=fp16", "--max_grad_norm=1.0", steps=3))
    assert result.overflow_skipped_steps == 3 and result.global_step == 3
    assert torch.equal(result.tokens.vectors_by_slot()["emb_params"], still.tokens.vectors_by_slot()["emb_params"])
    assert "3 of 3 optimizer step(s) skipped because their gradients overflowed; final loss scale 1.58456e+29" in caplog.text  # 2**100 / 2**3


@pytest.mark.training
def test_fp16_resume_with_the_scaler_state_equals_an_uninterrupted_run(tiny_model_dir, tmp_path, dataset, monkeypatch):
    model = tiny_model_dir("sd1")
    monkeypatch.setattr(precision, "INIT_SCALE", 2.0**24)  # the first step overflows: the scale the state carries matters
    full = run(train_argv(model, dataset, tmp_path / "full", "--mixed_precision=fp16", steps=5))
    run(train_argv(model, dataset, tmp_path / "part", "--mixed_precision=fp16", "--save_every_n_steps=2", "--save_state", steps=5))
    state = tmp_path / "part" / "ti-step00000002-state"
    scaler = json.loads((state / "progress.json").read_text())["scaler"]
    assert scaler["scale"] < 2.0**24  # it halved on the overflow(s) and was saved
    resumed = run(train_argv(model, dataset, tmp_path / "resumed", "--mixed_precision=fp16", f"--resume={state}", steps=5))
    assert resumed.global_step == 5
    torch.testing.assert_close(resumed.tokens.vectors_by_slot(), full.tokens.vectors_by_slot(), rtol=0, atol=1e-6)


@pytest.mark.training
def test_full_fp16_runs_without_autocast_and_no_half_vae_keeps_the_vae_fp32(tiny_model_dir, tmp_path, dataset):
    result = run(train_argv(tiny_model_dir("sd1"), dataset, tmp_path, "--mixed_precision=fp16", "--full_fp16", "--no_half_vae", steps=2))
    assert result.models.vae.dtype == torch.float32 and result.models.unet.dtype == torch.float16
    assert torch.isfinite(result.tokens.vectors_by_slot()["emb_params"]).all()
    assert result.tokens.parameters()[0].dtype == torch.float32


@pytest.mark.training
def test_full_bf16_trains_one_step(tiny_model_dir, tmp_path, dataset):
    # bf16 is ~100x slower on CPUs without AVX-512: one step of the tiny model proves the path
    result = run(train_argv(tiny_model_dir("sd1"), dataset, tmp_path, "--mixed_precision=bf16", "--full_bf16", "--cache_latents", steps=1))
    assert result.models.unet.dtype == torch.bfloat16 and result.global_step == 1
    assert torch.isfinite(result.tokens.vectors_by_slot()["emb_params"]).all()


def _overflowing_vae():
    vae = build_tiny_components("sd1")["vae"].to(torch.float16)
    with torch.no_grad():
        vae.encoder.conv_in.weight.fill_(1e4)  # activations past fp16's 65504: Inf, then NaN, as a real fp16 VAE does
    return vae


def test_nan_latents_from_a_half_vae_suggest_no_half_vae_on_the_uncached_path():
    images = torch.ones(1, 3, 64, 64)
    with pytest.raises(UserError, match="--no_half_vae"):
        encode_images(_overflowing_vae(), images, 0.18215, 0.0, [torch.Generator().manual_seed(0)])


@pytest.mark.training
def test_nan_latents_are_refused_at_caching_time_with_the_hint(tiny_model_dir, tmp_path, dataset):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir("sd1"), model)
    weights = model / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["encoder.conv_in.weight"] = torch.full_like(tensors["encoder.conv_in.weight"], 1e4)
    save_file(tensors, weights)
    with pytest.raises(UserError, match=r"NaN/Inf latents for .*images/00000.png.*--no_half_vae"):
        run(train_argv(model, dataset, tmp_path / "out", "--mixed_precision=fp16", "--cache_latents", steps=1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA the 8-bit optimizers may be usable")
@pytest.mark.parametrize("flags", [["--optimizer_type=AdamW8bit"], ["--optimizer_type=PagedAdamW8bit"], ["--optimizer_type=Lion8bit"],
                                   ["--optimizer_type=SGDNesterov8bit"], ["--use_8bit_adam"]])
def test_8bit_optimizers_without_cuda_fail_in_one_line_before_any_model_is_loaded(flags, tmp_path, dataset, capsys):
    argv = train_argv(tmp_path / "no_such_model", dataset, tmp_path / "out", *flags)
    code = run_main(train_textual_inversion.main, argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and "need a CUDA GPU" in err and flags[0].split("=")[0] in err
    assert "no_such_model" not in err  # refused before the model path was even looked at


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_xformers_without_cuda_is_one_line(tmp_path, dataset):
    problems = flag_problems(parse_training_args(train_argv(tmp_path / "m", dataset, tmp_path / "o", "--xformers")), sdxl=False)
    assert problems == ["--xformers needs a CUDA GPU; leave it out to use PyTorch's scaled-dot-product attention (--sdpa, the default)"]
