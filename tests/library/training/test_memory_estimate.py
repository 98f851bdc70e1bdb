"""Specification of the memory estimate printed before step 1, and of the measured peak printed after training."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from library.training.memory_estimate import GIB, TextEncoderShape, UNetShape, activation_elements, estimate_peak_memory
from tests.helpers.training import make_ti_dataset, train_argv

REPO = Path(__file__).resolve().parents[3]
# SD1.5's UNet (runwayml/stable-diffusion-v1-5 unet/config.json) and CLIP ViT-L/14 text encoder
SD15 = UNetShape(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, transformer_layers=(1, 1, 1, 0))
CLIP_L = TextEncoderShape(hidden_size=768, num_layers=12, tokens=77)
# docs/performance.md: the saved activations of one SD1.5 fp32 step at 256 px, counted from the autograd graph
SD15_256_FP32_ACTIVATIONS = 357 * 1024**2


def _estimate(**overrides):
    settings = dict(device="cpu", weight_bytes={"float32": 3 * GIB}, unet=SD15, text_encoders=[CLIP_L], latent_hw=(32, 32),
                    batch_size=1, activation_bytes=4, gradient_checkpointing=False, trainable_params=4 * 768, process_bytes=GIB // 2)
    settings.update(overrides)
    return estimate_peak_memory(**settings)


def test_sd15_activations_at_256px_match_the_measured_autograd_graph_within_15_percent():
    estimate = _estimate()
    assert abs(estimate.activations - SD15_256_FP32_ACTIVATIONS) / SD15_256_FP32_ACTIVATIONS < 0.15


def test_activations_grow_with_pixels_and_batch_and_shrink_with_half_precision_and_checkpointing():
    base = _estimate().activations
    assert _estimate(latent_hw=(64, 64)).activations > 3.5 * base  # 4x the latent pixels; the text part stays
    assert _estimate(batch_size=2).activations == 2 * base
    assert _estimate(activation_bytes=2).activations == base // 2
    assert _estimate(gradient_checkpointing=True).activations < base / 5


def test_the_total_is_the_sum_of_its_parts_and_the_optimizer_state_is_kilobytes():
    estimate = _estimate(weight_bytes={"float16": GIB, "float32": GIB // 4})
    assert estimate.total == GIB + GIB // 4 + GIB // 2 + estimate.activations + estimate.optimizer_state
    assert estimate.optimizer_state == 4 * 768 * 4 * 4  # vectors, gradient, two Adam moments, fp32
    line = estimate.lines()[0]
    assert line.startswith("  memory estimate:") and "float16 1.00, float32 0.25" in line and "batch 1 of 256x256" in line


def test_sdxl_counts_its_ten_transformer_layers():
    sdxl = UNetShape(block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers=(0, 2, 10))
    one_layer = UNetShape(block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers=(0, 1, 1))
    assert activation_elements(sdxl, (128, 128), [], gradient_checkpointing=False) > 3 * activation_elements(one_layer, (128, 128), [], gradient_checkpointing=False)


def _run_and_read(argv: list[str]) -> tuple[float, float]:
    """Train in a fresh process (peak RSS is per process); returns (estimated, measured) GiB from its output."""
    done = subprocess.run([sys.executable, str(REPO / "train_textual_inversion.py"), *argv], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    estimated = float(re.search(r"memory estimate:\s+([\d.]+) GiB", output).group(1))
    measured = float(re.search(r"measured peak ([\d.]+) GiB", output).group(1))
    return estimated, measured


@pytest.mark.training
def test_tiny_model_estimate_is_within_20_percent_of_the_measured_peak_rss(tiny_model_dir, tmp_path):
    config = make_ti_dataset(tmp_path / "data")
    estimated, measured = _run_and_read(train_argv(tiny_model_dir("sd1"), config, tmp_path / "out", steps=2))
    assert abs(estimated - measured) / measured < 0.20, (estimated, measured)


@pytest.mark.slow
@pytest.mark.training
def test_full_size_sd15_at_256px_estimate_is_within_20_percent_of_the_measured_peak_rss(tmp_path):
    model = tmp_path / "sd15"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_random_model.py"), "--arch", "sd15", "--out", str(model)], cwd=REPO, check=True, timeout=1800)
    config = make_ti_dataset(tmp_path / "data", n=2, batch_size=1, resolution=256)
    estimated, measured = _run_and_read(train_argv(model, config, tmp_path / "out", "--cache_latents", steps=2))
    assert abs(estimated - measured) / measured < 0.20, (estimated, measured)


def test_the_measured_peak_is_the_runs_own_not_its_parents(tmp_path):
    # Linux keeps ru_maxrss across fork and exec: a child of a 1 GiB parent would report 1 GiB of its own
    child = "from library.training.memory_estimate import peak_rss_bytes; print(peak_rss_bytes())"
    parent = (
        "import subprocess, sys\n"
        "ballast = bytearray(1 << 30)\n"  # touched: resident in this parent
        "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"
        f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True, text=True, cwd={str(REPO)!r}).stdout)\n"
    )
    done = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert int(done.stdout.split()[0]) < 512 * 2**20, done.stdout + done.stderr
