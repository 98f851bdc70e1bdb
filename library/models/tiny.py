"""Tiny but real SD1 / SD2 (v-prediction) / SDXL models, built in-process.

Same classes and the same 49,408-token tokenizers as the full models, with small hidden sizes, so that
tests, the demo and smoke benchmarks run the real code paths on a CPU in seconds. The VAE keeps the real
downsampling factor of 8 so bucket and latent sizes match the full models.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from library.tokenizers import load_bundled_tokenizer

FAMILIES = ("sd1", "sd2", "sdxl")


def _text_config(hidden: int, act: str, projection_dim: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=3,  # >= 2 so --clip_skip 2 and SDXL's penultimate layer are meaningful
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=projection_dim or hidden,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407 if act == "quick_gelu" else 0,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.18215,
    )


def _unet(family: str, cross_attention_dim: int) -> UNet2DConditionModel:
    common = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=16,
    )
    if family == "sd1":
        return UNet2DConditionModel(attention_head_dim=8, **common)
    if family == "sd2":
        return UNet2DConditionModel(attention_head_dim=(4, 8), use_linear_projection=True, **common)
    return UNet2DConditionModel(
        attention_head_dim=(4, 8),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 size/crop ids + pooled text (projection_dim)
        transformer_layers_per_block=(1, 1),
        **common,
    )


def _scheduler(prediction_type: str) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        prediction_type=prediction_type,
    )


def build_tiny_components(family: str, seed: int = 0) -> dict:
    """Components keyed as diffusers pipelines name them (`unet`, `vae`, `text_encoder`, ...)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    torch.manual_seed(seed)
    if family == "sd1":
        return dict(
            unet=_unet("sd1", 32),
            vae=_vae(),
            text_encoder=CLIPTextModel(_text_config(32, "quick_gelu")),
            tokenizer=load_bundled_tokenizer("sd1"),
            scheduler=_scheduler("epsilon"),
        )
    if family == "sd2":
        return dict(
            unet=_unet("sd2", 48),
            vae=_vae(),
            text_encoder=CLIPTextModel(_text_config(48, "gelu")),
            tokenizer=load_bundled_tokenizer("sd2"),
            scheduler=_scheduler("v_prediction"),
        )
    return dict(
        unet=_unet("sdxl", 32 + 64),
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config(32, "quick_gelu")),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(64, "gelu", projection_dim=32)),
        tokenizer=load_bundled_tokenizer("sd1"),
        tokenizer_2=load_bundled_tokenizer("sd2"),
        scheduler=_scheduler("epsilon"),
    )


def build_tiny_pipeline(family: str, seed: int = 0):
    """A diffusers pipeline (StableDiffusionPipeline or StableDiffusionXLPipeline) of tiny components."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    parts = build_tiny_components(family, seed)
    if family == "sdxl":
        return StableDiffusionXLPipeline(**parts)
    return StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def save_tiny_model(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny model as a diffusers directory; returns its path."""
    out_dir = Path(out_dir)
    build_tiny_pipeline(family, seed).save_pretrained(str(out_dir))
    return out_dir
