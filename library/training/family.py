"""Model-family adapters: the only place where SD 1.x/2.x and SDXL training differ.

An adapter says which embedding-file slots the text encoders fill, and turns a batch's captions (and, for SDXL,
its size/crop conditioning) into the UNet's keyword arguments. The training loop is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from library.text_conditioning import encode_sd, encode_sdxl, sdxl_time_ids, tokenize_chunks


@dataclass
class SDFamily:
    """SD 1.x and 2.x: one CLIP text encoder; files hold `emb_params`."""

    name: str = "sd"
    slots: tuple[str, ...] = ("emb_params",)

    def unet_conditioning(self, tokenizers, text_encoders, captions: list[str], batch: dict, *, max_token_length=None, clip_skip=None) -> dict:
        ids = tokenize_chunks(tokenizers[0], captions, max_token_length)
        return {"encoder_hidden_states": encode_sd(text_encoders[0], ids, clip_skip)}


@dataclass
class SDXLFamily:
    """SDXL: CLIP-L and OpenCLIP bigG; files hold `clip_l` and `clip_g`; pooled text and size/crop ids."""

    name: str = "sdxl"
    slots: tuple[str, ...] = ("clip_l", "clip_g")

    def unet_conditioning(self, tokenizers, text_encoders, captions: list[str], batch: dict, *, max_token_length=None, clip_skip=None) -> dict:
        ids = [tokenize_chunks(tok, captions, max_token_length) for tok in tokenizers]
        hidden, pooled = encode_sdxl(text_encoders, ids, eos_token_id=tokenizers[0].eos_token_id)
        time_ids = sdxl_time_ids(batch["original_sizes_hw"], batch["crop_top_lefts"], batch["target_sizes_hw"])
        return {
            "encoder_hidden_states": hidden,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids.to(pooled.device, pooled.dtype)},
        }


def family_for(model_family: str):
    """The adapter for a loaded model's family ("sd1", "sd2" or "sdxl")."""
    return SDXLFamily() if model_family == "sdxl" else SDFamily()


def to_device(conditioning: dict, device: torch.device) -> dict:
    return {k: (to_device(v, device) if isinstance(v, dict) else v.to(device)) for k, v in conditioning.items()}
