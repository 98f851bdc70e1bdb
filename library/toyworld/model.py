"""Where the shipped toy model lives and how to load it as a plain diffusers pipeline.

The toy model (trained by tools/train_toy_model.py, described in docs/toy_model.md) is an ordinary SD1-style
diffusers directory: `StableDiffusionPipeline.from_pretrained(TOY_MODEL_DIR)` loads it with no extra code.
Its VAE downsamples by 4, not 8: 64x64 images have 16x16 latents.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from library.toyworld.world import HELD_OUT

TOY_MODEL_DIR = Path(__file__).resolve().parents[1] / "resources" / "toy_model"


def load_toy_pipeline(path: str | Path = TOY_MODEL_DIR, dtype: torch.dtype = torch.float32):
    """The toy model as a StableDiffusionPipeline with a DDIM scheduler (weights are stored fp16, loaded as `dtype`)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    # fp16 files load as fp32 by default; naming the dtype would only draw diffusers' torch_dtype/dtype rename warning
    pipe = StableDiffusionPipeline.from_pretrained(str(path))
    if dtype != torch.float32:
        pipe = pipe.to(dtype=dtype)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def held_out_pairs(path: str | Path = TOY_MODEL_DIR) -> list[tuple[str, str]]:
    """Every (color, shape) the model at `path` never saw: the purple star first, then its `--hold_out` pairs,
    as its train_info.json records them (a folder without one: the purple star alone)."""
    info_path = Path(path) / "train_info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return [HELD_OUT, *[tuple(pair) for pair in info.get("also_held_out", [])]]
