"""Noise and timestep sampling for the diffusion loss, as sd-scripts does it (custom_train_functions / train_util).

Every random draw goes through an explicit `torch.Generator` (or the global RNG when it is None), in a fixed order,
so a seeded generator reproduces a step exactly. Draws happen on the generator's device and are moved to the
latents' device, so a CPU generator also works for CUDA latents.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

from library.errors import UserError

# Stable Diffusion's training noise schedule (sd-scripts' constants; the same for SD1, SD2 and SDXL)
SD_BETA_START = 0.00085
SD_BETA_END = 0.012
SD_NUM_TRAIN_TIMESTEPS = 1000


def make_noise_scheduler(*, v_parameterization: bool = False, zero_terminal_snr: bool = False) -> DDPMScheduler:
    """The DDPM scheduler sd-scripts trains with; `zero_terminal_snr` rescales betas (arXiv 2305.08891)."""
    return DDPMScheduler(
        num_train_timesteps=SD_NUM_TRAIN_TIMESTEPS,
        beta_start=SD_BETA_START,
        beta_end=SD_BETA_END,
        beta_schedule="scaled_linear",
        clip_sample=False,
        prediction_type="v_prediction" if v_parameterization else "epsilon",
        rescale_betas_zero_snr=zero_terminal_snr,
    )


def apply_zero_terminal_snr(scheduler) -> None:
    """Rescale an existing scheduler's betas in place so the last timestep has zero SNR (`--zero_terminal_snr`)."""
    betas = rescale_zero_terminal_snr(scheduler.betas.float())
    scheduler.betas = betas
    scheduler.alphas = 1.0 - betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, dim=0)


def _draw_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def _randn(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    out = torch.randn(shape, generator=generator, device=_draw_device(generator, like.device), dtype=like.dtype)
    return out.to(like.device)


def _rand1(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    out = torch.rand(1, generator=generator, device=_draw_device(generator, like.device), dtype=torch.float32)
    return out.to(like.device)


def sample_noise(
    latents: torch.Tensor,
    *,
    noise_offset: float | None = None,
    noise_offset_random_strength: bool = False,
    adaptive_noise_scale: float | None = None,
    multires_noise_iterations: int | None = None,
    multires_noise_discount: float = 0.3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian noise shaped like `latents` (B, C, H, W), with sd-scripts' optional offset and multires noise."""
    noise = _randn(latents.shape, latents, generator)
    if noise_offset:
        strength = _rand1(latents, generator) * noise_offset if noise_offset_random_strength else noise_offset
        noise = apply_noise_offset(latents, noise, strength, adaptive_noise_scale, generator=generator)
    if multires_noise_iterations:
        noise = pyramid_noise(noise, multires_noise_iterations, multires_noise_discount, generator=generator)
    return noise


def apply_noise_offset(
    latents: torch.Tensor,
    noise: torch.Tensor,
    noise_offset: float | torch.Tensor,
    adaptive_noise_scale: float | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Add a per-(sample, channel) constant to the noise (crosslabs' offset noise); `adaptive_noise_scale` grows
    the offset with each channel's mean |latent|."""
    if adaptive_noise_scale is not None:
        latent_mean = latents.mean(dim=(2, 3), keepdim=True).abs()
        # clamp: a negative adaptive scale must not flip the offset's sign
        noise_offset = torch.clamp(noise_offset + adaptive_noise_scale * latent_mean, min=0.0)
    return noise + noise_offset * _randn((latents.shape[0], latents.shape[1], 1, 1), latents, generator)


def pyramid_noise(
    noise: torch.Tensor, iterations: int, discount: float, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Multi-resolution ("pyramid") noise: add upsampled coarser noise with weight discount**i, renormalize."""
    b, c, h, w = noise.shape
    noise = noise.clone()
    for i in range(iterations):
        r = _rand1(noise, generator).item() * 2 + 2  # a random 2x..4x shrink per level rather than exactly 2x
        hn, wn = max(1, int(h / (r**i))), max(1, int(w / (r**i)))
        coarse = _randn((b, c, hn, wn), noise, generator)
        noise += F.interpolate(coarse, size=(h, w), mode="bilinear") * discount**i
        if hn == 1 or wn == 1:
            break  # the coarsest level is 1 pixel wide
    return noise / noise.std()


def sample_timesteps(
    batch_size: int,
    *,
    min_timestep: int | None = None,
    max_timestep: int | None = None,
    num_train_timesteps: int = SD_NUM_TRAIN_TIMESTEPS,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniform integer timesteps in [min_timestep, max_timestep) (defaults 0 and num_train_timesteps), int64 (B,).

    With min == max every sample gets that timestep (sd-scripts' rule).
    """
    low = 0 if min_timestep is None else min_timestep
    high = num_train_timesteps if max_timestep is None else max_timestep
    if not 0 <= low <= high <= num_train_timesteps or (low == high == num_train_timesteps):
        raise UserError(
            f"--min_timestep {low} / --max_timestep {high}: need 0 <= min <= max <= {num_train_timesteps}, "
            f"and min < {num_train_timesteps} (timesteps are 0..{num_train_timesteps - 1})"
        )
    draw_device = generator.device if generator is not None else torch.device("cpu")
    if low < high:
        timesteps = torch.randint(low, high, (batch_size,), generator=generator, device=draw_device)
    else:
        timesteps = torch.full((batch_size,), high, dtype=torch.long, device=draw_device)
    return timesteps.long().to(device or draw_device)


def add_noise(
    scheduler,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    ip_noise_gamma: float | None = None,
    ip_noise_gamma_random_strength: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Forward diffusion `scheduler.add_noise`; with `ip_noise_gamma` the input is perturbed by extra noise
    (arXiv 2301.11706) while the training target stays `noise`."""
    if ip_noise_gamma:
        strength = _rand1(latents, generator) * ip_noise_gamma if ip_noise_gamma_random_strength else ip_noise_gamma
        noise = noise + strength * _randn(latents.shape, latents, generator)
    return scheduler.add_noise(latents, noise, timesteps)


@dataclass(frozen=True)
class NoiseSettings:
    """The noise and timestep flags of a run, read once; `draw` applies them to a batch."""

    noise_offset: float | None = None
    noise_offset_random_strength: bool = False
    adaptive_noise_scale: float | None = None
    multires_noise_iterations: int | None = None
    multires_noise_discount: float = 0.3
    ip_noise_gamma: float | None = None
    ip_noise_gamma_random_strength: bool = False
    min_timestep: int | None = None
    max_timestep: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "NoiseSettings":
        return cls(
            noise_offset=args.noise_offset,
            noise_offset_random_strength=args.noise_offset_random_strength,
            adaptive_noise_scale=args.adaptive_noise_scale,
            multires_noise_iterations=args.multires_noise_iterations,
            multires_noise_discount=args.multires_noise_discount,
            ip_noise_gamma=args.ip_noise_gamma,
            ip_noise_gamma_random_strength=args.ip_noise_gamma_random_strength,
            min_timestep=args.min_timestep,
            max_timestep=args.max_timestep,
        )

    def draw(self, scheduler, latents: torch.Tensor, generators: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noise, timesteps, noisy latents) for a batch, sample i drawn only from `generators[i]`.

        One generator per sample, seeded by its global position: the noise does not depend on how a global batch is
        split across processes or accumulation steps, nor on anything drawn before (exact resume).
        """
        noise, timesteps, noisy = [], [], []
        for index, generator in enumerate(generators):
            one = latents[index : index + 1]
            n = sample_noise(
                one,
                noise_offset=self.noise_offset,
                noise_offset_random_strength=self.noise_offset_random_strength,
                adaptive_noise_scale=self.adaptive_noise_scale,
                multires_noise_iterations=self.multires_noise_iterations,
                multires_noise_discount=self.multires_noise_discount,
                generator=generator,
            )
            t = sample_timesteps(
                1, min_timestep=self.min_timestep, max_timestep=self.max_timestep,
                num_train_timesteps=scheduler.config.num_train_timesteps, generator=generator,
            ).to(latents.device)
            noisy.append(add_noise(scheduler, one, n, t, ip_noise_gamma=self.ip_noise_gamma,
                                   ip_noise_gamma_random_strength=self.ip_noise_gamma_random_strength, generator=generator))
            noise.append(n)
            timesteps.append(t)
        return torch.cat(noise), torch.cat(timesteps), torch.cat(noisy)
