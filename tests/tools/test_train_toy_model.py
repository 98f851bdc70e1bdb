"""A few steps of every phase of the toy-model trainer produce a loadable diffusers model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.training
def test_tiny_run_writes_a_loadable_model(tmp_path):
    out = tmp_path / "model"
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_toy_model.py"), "--out", str(out), "--work_dir", str(tmp_path / "work"),
         "--threads", "1", "--no-bf16_vae", "--batch_size", "4", "--vae_steps", "2", "--num_images", "16", "--unet_steps", "2",
         "--warmup_steps", "1", "--save_every", "2", "--eval_prompts", "2", "--hold_out", "blue,cross"],
        check=True, capture_output=True, text=True, timeout=600,
    )
    info = json.loads((out / "train_info.json").read_text())
    assert info["unet_steps_done"] == 2 and set(info["eval_seen_prompts"]) >= {"color", "shape"}
    assert 0 <= info["eval_init_word_held_out_rate"] <= 1
    assert info["also_held_out"] == [["blue", "cross"]] and 0 <= info["eval_init_word_rate_blue_cross"] <= 1
    assert json.loads((out / "text_encoder" / "config.json").read_text())["dtype"] == "float32"

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(out))
    assert pipe.vae_scale_factor == 4 and pipe.vae.config.scaling_factor == pytest.approx(info["scaling_factor"])

    # the UNet phase on another model's VAE (how the shipped model was made: docs/toy_model.md), which it records
    again = tmp_path / "again"
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_toy_model.py"), "--out", str(again), "--work_dir", str(tmp_path / "work2"),
         "--threads", "1", "--no-bf16_vae", "--batch_size", "4", "--phase", "unet", "--vae_from", str(out), "--num_images", "8",
         "--unet_steps", "1", "--warmup_steps", "1", "--save_every", "1", "--eval_prompts", "1"],
        check=True, capture_output=True, text=True, timeout=600,
    )
    record = json.loads((again / "train_info.json").read_text())["vae_from"]
    assert record["model"] == str(out) and record["train_info"]["unet_steps_done"] == 2
    assert not (tmp_path / "work2" / "vae").exists()


def test_vae_from_is_only_for_the_unet_phase(capsys):
    from tests.helpers.tools import load_tool

    with pytest.raises(SystemExit) as exit_info:
        load_tool("train_toy_model").parse_args(["--vae_from", "some/model"])
    assert exit_info.value.code == 2 and "--phase unet" in capsys.readouterr().err
