"""Full-size architectures at random weights, for the slow loading test."""

from __future__ import annotations

from pathlib import Path

import torch


def random_components(config_dir: Path, dtype: torch.dtype = torch.float16, seed: int = 0) -> dict:
    """Full-size models from a diffusers config directory, filled with random values quickly.

    Values come from one shared random pool (a real init of ~1B parameters takes tens of seconds on a CPU);
    loading and detection do not care what the numbers are.
    """
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with init_empty_weights():
        parts = dict(
            unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config_dir / "unet"))),
            vae=AutoencoderKL.from_config(AutoencoderKL.load_config(str(config_dir / "vae"))),
            text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(str(config_dir / "text_encoder"))),
        )
        if (config_dir / "text_encoder_2").is_dir():
            parts["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(config_dir / "text_encoder_2")))
    pool = torch.randn(1 << 23, generator=torch.Generator().manual_seed(seed)).to(dtype) * 0.02
    chunk = pool.numel() // 2
    for model in parts.values():
        model.to(dtype).to_empty(device="cpu")
        with torch.no_grad():
            for index, param in enumerate(model.parameters()):
                flat, shift = param.view(-1), (index * 7919) % chunk  # a different window per parameter
                for start in range(0, flat.numel(), chunk):
                    n = min(chunk, flat.numel() - start)
                    flat[start:start + n] = pool[shift:shift + n]
    return parts
