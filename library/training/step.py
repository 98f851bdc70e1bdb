"""One training step: latents -> noise -> UNet prediction -> weighted loss.

The step reads no flags: each concern's settings are owned and parsed by its module (noise.NoiseSettings,
loss.LossSettings, family.ConditioningSettings, LatentScaling here), and StepSettings only bundles them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from library.models.fp8_storage import compute_dtype_of
from library.training.family import ConditioningSettings
from library.training.precision import check_finite_latents
from library.training.loss import LossSettings
from library.training.noise import NoiseSettings


@dataclass(frozen=True)
class LatentScaling:
    """The VAE's latent scale and shift: latents = (posterior sample - shift) * scale."""

    scale: float
    shift: float = 0.0

    @classmethod
    def from_vae(cls, vae) -> "LatentScaling":
        return cls(scale=vae.config.scaling_factor, shift=getattr(vae.config, "shift_factor", None) or 0.0)


@dataclass(frozen=True)
class StepSettings:
    """The settings one step reads, one object per concern."""

    conditioning: ConditioningSettings
    noise: NoiseSettings
    loss: LossSettings
    latents: LatentScaling

    @classmethod
    def from_args(cls, args: argparse.Namespace, models) -> "StepSettings":
        return cls(
            conditioning=ConditioningSettings.from_args(args),
            noise=NoiseSettings.from_args(args),
            loss=LossSettings.from_args(args, v_prediction=models.v_parameterization),
            latents=LatentScaling.from_vae(models.vae),
        )


def encode_images(vae, images: torch.Tensor, scale: float, shift: float, generators: list[torch.Generator]) -> torch.Tensor:
    """Latents for a batch that was not cached (the VAE is frozen: no graph).

    The posterior is sampled with each sample's own generator, not the global RNG, so resumed runs match.
    """
    with torch.no_grad():
        dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    mean, std = dist.mean.float(), dist.std.float()
    check_finite_latents(mean, vae.dtype, "a training batch")  # without --cache_latents, a half VAE's overflow shows here
    eps = torch.cat([torch.randn(mean.shape[1:], generator=g).unsqueeze(0) for g in generators]).to(mean.device)
    return (mean + std * eps - shift) * scale


def training_step(batch: dict, models, family, text_encoders, s: StepSettings, generators: list[torch.Generator], accelerator, snr: torch.Tensor) -> torch.Tensor:
    """Mean loss of one batch; gradients reach only the new token vectors. `snr` is loss.snr_table(scheduler) on the device."""
    latents = batch["latents"]
    if latents is None:
        latents = encode_images(models.vae, batch["images"], s.latents.scale, s.latents.shift, generators)
    latents = latents.to(accelerator.device, torch.float32)
    scheduler = models.noise_scheduler
    noise, timesteps, noisy = s.noise.draw(scheduler, latents, generators)

    with accelerator.autocast():
        conditioning = family.unet_conditioning(models.tokenizers, text_encoders, batch["captions"], batch, **s.conditioning.as_kwargs())
        unet_dtype = compute_dtype_of(models.unet)  # not the storage dtype under --fp8_base
        conditioning["encoder_hidden_states"] = conditioning["encoder_hidden_states"].to(unet_dtype)
        prediction = models.unet(noisy.to(unet_dtype), timesteps, **conditioning).sample

    return s.loss.per_sample(prediction, latents, noise, timesteps, scheduler, snr, batch).mean()
