"""One training step: latents -> noise -> UNet prediction -> weighted loss. Pure of flags beyond StepSettings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from library.models.fp8_storage import compute_dtype_of
from library.training import loss as loss_fns
from library.training import noise as noise_fns


@dataclass(frozen=True)
class StepSettings:
    """The flags one step needs, validated once."""

    max_token_length: int | None
    clip_skip: int | None
    noise_offset: float | None
    noise_offset_random_strength: bool
    adaptive_noise_scale: float | None
    multires_noise_iterations: int | None
    multires_noise_discount: float
    ip_noise_gamma: float | None
    ip_noise_gamma_random_strength: bool
    min_timestep: int | None
    max_timestep: int | None
    loss_type: str
    huber_schedule: str
    huber_c: float
    huber_scale: float
    min_snr_gamma: float | None
    scale_v_pred_loss_like_noise_pred: bool
    v_pred_like_loss: float | None
    debiased_estimation_loss: bool
    masked_loss: bool
    v_parameterization: bool
    vae_scale: float
    vae_shift: float

    @classmethod
    def from_args(cls, args: argparse.Namespace, models) -> "StepSettings":
        return cls(
            max_token_length=args.max_token_length,
            clip_skip=args.clip_skip,
            noise_offset=args.noise_offset,
            noise_offset_random_strength=args.noise_offset_random_strength,
            adaptive_noise_scale=args.adaptive_noise_scale,
            multires_noise_iterations=args.multires_noise_iterations,
            multires_noise_discount=args.multires_noise_discount,
            ip_noise_gamma=args.ip_noise_gamma,
            ip_noise_gamma_random_strength=args.ip_noise_gamma_random_strength,
            min_timestep=args.min_timestep,
            max_timestep=args.max_timestep,
            loss_type=args.loss_type,
            huber_schedule=args.huber_schedule,
            huber_c=args.huber_c,
            huber_scale=getattr(args, "huber_scale", 1.0),
            min_snr_gamma=args.min_snr_gamma,
            scale_v_pred_loss_like_noise_pred=args.scale_v_pred_loss_like_noise_pred,
            v_pred_like_loss=args.v_pred_like_loss,
            debiased_estimation_loss=args.debiased_estimation_loss,
            masked_loss=args.masked_loss or args.alpha_mask,
            v_parameterization=models.v_parameterization,
            vae_scale=models.vae.config.scaling_factor,
            vae_shift=getattr(models.vae.config, "shift_factor", None) or 0.0,
        )


def encode_images(vae, images: torch.Tensor, scale: float, shift: float, generators: list[torch.Generator]) -> torch.Tensor:
    """Latents for a batch that was not cached (the VAE is frozen: no graph).

    The posterior is sampled with each sample's own generator, not the global RNG, so resumed runs match.
    """
    with torch.no_grad():
        dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    mean, std = dist.mean.float(), dist.std.float()
    eps = torch.cat([torch.randn(mean.shape[1:], generator=g).unsqueeze(0) for g in generators]).to(mean.device)
    return (mean + std * eps - shift) * scale


def training_step(batch: dict, models, family, text_encoders, s: StepSettings, generators: list[torch.Generator], accelerator, snr: torch.Tensor) -> torch.Tensor:
    """Mean loss of one batch; gradients reach only the new token vectors. `snr` is loss.snr_table(scheduler) on the device."""
    device = accelerator.device
    latents = batch["latents"]
    if latents is None:
        latents = encode_images(models.vae, batch["images"], s.vae_scale, s.vae_shift, generators)
    latents = latents.to(device, torch.float32)
    scheduler = models.noise_scheduler

    # one generator per sample, seeded by its global position: the noise does not depend on how a global
    # batch is split across processes or accumulation steps, nor on anything drawn before (exact resume)
    noise, timesteps, noisy = [], [], []
    for index, generator in enumerate(generators):
        one = latents[index : index + 1]
        n = noise_fns.sample_noise(
            one,
            noise_offset=s.noise_offset,
            noise_offset_random_strength=s.noise_offset_random_strength,
            adaptive_noise_scale=s.adaptive_noise_scale,
            multires_noise_iterations=s.multires_noise_iterations,
            multires_noise_discount=s.multires_noise_discount,
            generator=generator,
        )
        t = noise_fns.sample_timesteps(
            1, min_timestep=s.min_timestep, max_timestep=s.max_timestep, num_train_timesteps=scheduler.config.num_train_timesteps, generator=generator
        ).to(device)
        noisy.append(
            noise_fns.add_noise(scheduler, one, n, t, ip_noise_gamma=s.ip_noise_gamma, ip_noise_gamma_random_strength=s.ip_noise_gamma_random_strength, generator=generator)
        )
        noise.append(n)
        timesteps.append(t)
    noise, timesteps, noisy = torch.cat(noise), torch.cat(timesteps), torch.cat(noisy)

    with accelerator.autocast():
        conditioning = family.unet_conditioning(models.tokenizers, text_encoders, batch["captions"], batch, max_token_length=s.max_token_length, clip_skip=s.clip_skip)
        unet_dtype = compute_dtype_of(models.unet)  # not the storage dtype under --fp8_base
        conditioning["encoder_hidden_states"] = conditioning["encoder_hidden_states"].to(unet_dtype)
        prediction = models.unet(noisy.to(unet_dtype), timesteps, **conditioning).sample

    target = loss_fns.target_for(scheduler, latents, noise, timesteps, prediction_type="v_prediction" if s.v_parameterization else "epsilon")
    per_sample = loss_fns.compute_loss(
        prediction.float(),
        target,
        loss_type=s.loss_type,
        huber_c=s.huber_c,
        huber_schedule=s.huber_schedule,
        huber_scale=s.huber_scale,
        timesteps=timesteps,
        scheduler=scheduler,
        mask=batch.get("alpha_masks") if s.masked_loss else None,
    )
    per_sample = per_sample * batch["loss_weights"].to(device)
    per_sample = per_sample * loss_fns.loss_weights(
        timesteps,
        snr,
        v_prediction=s.v_parameterization,
        min_snr_gamma=s.min_snr_gamma,
        scale_v_pred_loss_like_noise_pred=s.scale_v_pred_loss_like_noise_pred,
        v_pred_like_loss=s.v_pred_like_loss,
        debiased_estimation_loss=s.debiased_estimation_loss,
    )
    return per_sample.mean()
