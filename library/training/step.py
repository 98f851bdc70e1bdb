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
    sampling: str = "random"  # uncached batches: --latent_sampling (random: a new posterior draw every step)
    seed: int = 0  # of --latent_sampling once's per-image draw, the dataset's seed as when caching

    @classmethod
    def from_vae(cls, vae, sampling: str | None = None, seed: int = 0) -> "LatentScaling":
        return cls(scale=vae.config.scaling_factor, shift=getattr(vae.config, "shift_factor", None) or 0.0,
                   sampling=sampling or "random", seed=seed)


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
            latents=LatentScaling.from_vae(models.vae, getattr(args, "latent_sampling", None), args.seed if args.seed is not None else 0),
        )


def encode_images(vae, images: torch.Tensor, latents: LatentScaling, generators: list[torch.Generator], paths: list | None = None) -> torch.Tensor:
    """Latents for a batch that was not cached (the VAE is frozen: no graph), drawn as --latent_sampling says.

    random: a new posterior draw each step, from each sample's own generator (not the global RNG, so resumed runs
    match); deterministic: the posterior mean; once: each image's one fixed draw, the draw the latent cache makes.
    """
    with torch.no_grad():
        dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    mean, std = dist.mean.float(), dist.std.float()
    check_finite_latents(mean, vae.dtype, "a training batch")  # without --cache_latents, a half VAE's overflow shows here
    if latents.sampling == "deterministic":
        return (mean - latents.shift) * latents.scale
    if latents.sampling == "once":
        from library.dataset.latent_cache import once_generator

        assert paths is not None, "--latent_sampling once needs the batch's image paths"
        eps = torch.cat([torch.randn(mean.shape[1:], generator=once_generator(latents.seed, p)).unsqueeze(0) for p in paths])
    else:
        eps = torch.cat([torch.randn(mean.shape[1:], generator=g).unsqueeze(0) for g in generators])
    return (mean + std * eps.to(mean.device) - latents.shift) * latents.scale


def training_step(batch: dict, models, family, text_encoders, s: StepSettings, generators: list[torch.Generator], accelerator, snr: torch.Tensor) -> torch.Tensor:
    """Mean loss of one batch; gradients reach only the new token vectors. `snr` is loss.snr_table(scheduler) on the device."""
    return per_sample_losses(batch, models, family, text_encoders, s, generators, accelerator, snr).mean()


def per_sample_losses(batch: dict, models, family, text_encoders, s: StepSettings, generators: list[torch.Generator], accelerator, snr: torch.Tensor) -> torch.Tensor:
    """Each sample's weighted loss (B,): sample i's noise and timestep come from `generators[i]` alone."""
    latents = batch["latents"]
    if latents is None:
        latents = encode_images(models.vae, batch["images"], s.latents, generators, batch.get("image_paths"))
    latents = latents.to(accelerator.device, torch.float32)
    scheduler = models.noise_scheduler
    noise, timesteps, noisy = s.noise.draw(scheduler, latents, generators)

    with accelerator.autocast():
        conditioning = family.unet_conditioning(models.tokenizers, text_encoders, batch["captions"], batch, **s.conditioning.as_kwargs())
        unet_dtype = compute_dtype_of(models.unet)  # not the storage dtype under --fp8_base
        conditioning["encoder_hidden_states"] = conditioning["encoder_hidden_states"].to(unet_dtype)
        prediction = models.unet(noisy.to(unet_dtype), timesteps, **conditioning).sample

    return s.loss.per_sample(prediction, latents, noise, timesteps, scheduler, snr, batch)
