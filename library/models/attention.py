"""Which attention kernel the UNet (and VAE) run: one setter for training and generation.

diffusers with PyTorch 2 already uses scaled-dot-product attention (SDPA), which picks a flash or memory-efficient
kernel itself; the flags only switch away from it (xformers, sliced attention) or pin it explicitly.
"""

from __future__ import annotations

import logging

import torch

from library.optional_deps import require

logger = logging.getLogger(__name__)


def set_attention(unet: torch.nn.Module, *, xformers: bool = False, sdpa: bool = False, mem_eff_attn: bool = False,
                  vae: torch.nn.Module | None = None) -> str:
    """Switch the attention of `unet` (and `vae`, when given) and return the kind set: "xformers", "sliced" or "sdpa".

    Callers check early that `xformers` has its package and a CUDA GPU. `xformers` wins; `mem_eff_attn` slices attention ("auto": half the heads at a time),
    the CPU-safe way to bound attention memory; `sdpa` (or nothing) keeps PyTorch's SDPA.
    """
    chosen = [f for f, on in (("--xformers", xformers), ("--mem_eff_attn", mem_eff_attn), ("--sdpa", sdpa)) if on]
    if len(chosen) > 1:
        logger.warning("%s: only %s takes effect (each picks a different attention kernel)", " and ".join(chosen), chosen[0])
    if xformers:
        require("xformers", "--xformers")
        for module in (unet, vae):
            if module is not None:
                module.enable_xformers_memory_efficient_attention()
        return "xformers"
    if mem_eff_attn:
        unet.set_attention_slice("auto")
        return "sliced"
    if sdpa:
        from diffusers.models.attention_processor import AttnProcessor2_0

        unet.set_attn_processor(AttnProcessor2_0())
    return "sdpa"
