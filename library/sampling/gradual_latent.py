"""Gradual Latent (sd-scripts' `--gradual_latent_*`): start small, grow the latents while sampling (Euler a only).

The starting noise is shrunk to `ratio` of the image's latent size (bicubic). From the first step whose timestep is
below `timesteps`, every `every_n_steps` steps the ratio grows by `ratio_step` (up to 1): the Euler-ancestral step
moves the latents to the new size (bicubic, sizes rounded down to a multiple of 8 latent pixels) and adds fresh
noise of that size, scaled by `s_noise`. `unsharp` = (kernel size, sigma, strength, target_x) sharpens after each
resize: the stepped latents when target_x, else the sample before the step (sd-scripts' `3,0.5,0.5,1`).
"""

from __future__ import annotations

from dataclasses import dataclass

from functools import lru_cache

import torch
import torch.nn.functional as F

from library.errors import UserError


@dataclass(frozen=True)
class GradualLatent:
    timesteps: int
    ratio: float = 0.5
    ratio_step: float = 0.125
    every_n_steps: int = 3
    s_noise: float = 1.0
    unsharp: tuple[int, float, float, bool] | None = None


def parse_unsharp(text: str | None, where: str) -> tuple[int, float, float, bool] | None:
    """`ksize,sigma,strength[,target_x]` (target_x 1 or 0, default 1), as sd-scripts reads it."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) not in (3, 4):
            raise ValueError("expected 3 or 4 comma-separated values")
        ksize, sigma, strength = int(float(parts[0])), float(parts[1]), float(parts[2])
        target_x = True if len(parts) == 3 else bool(int(parts[3]))
    except ValueError as err:
        raise UserError(f"{where} {text!r}: give ksize,sigma,strength[,target_x], e.g. 3,0.5,0.5,1 ({err})") from None
    if ksize < 1 or ksize % 2 == 0 or sigma <= 0:
        raise UserError(f"{where} {text!r}: the kernel size must be odd and positive, sigma above 0")
    return ksize, sigma, strength, target_x


def gaussian_blur(x: torch.Tensor, ksize: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders (what torchvision's gaussian_blur computes)."""
    half = (ksize - 1) / 2
    grid = torch.linspace(-half, half, ksize, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    channels = x.shape[1]
    pad = ksize // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, ksize).expand(channels, 1, 1, ksize), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, ksize, 1).expand(channels, 1, ksize, 1), groups=channels)


def unsharp_mask(x: torch.Tensor, unsharp) -> torch.Tensor:
    if not unsharp:
        return x
    ksize, sigma, strength, _ = unsharp
    return x + (x - gaussian_blur(x, ksize, sigma)) * strength


def resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x.float(), size=tuple(size), mode="bicubic", align_corners=False).to(x.dtype)


def shrink_start(latents: torch.Tensor, settings: GradualLatent) -> torch.Tensor:
    """The starting noise at `ratio` of its size (and sharpened, when asked)."""
    size = (max(1, int(latents.shape[-2] * settings.ratio)), max(1, int(latents.shape[-1] * settings.ratio)))
    return unsharp_mask(resize(latents, size), settings.unsharp)


@lru_cache(maxsize=None)
def scheduler_class() -> type:
    """Euler a that can grow the latents (built on first use, so that importing this module needs no diffusers)."""
    from diffusers import EulerAncestralDiscreteScheduler
    from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteSchedulerOutput
    from diffusers.utils.torch_utils import randn_tensor

    class GradualLatentEulerAncestral(EulerAncestralDiscreteScheduler):
        """Euler a whose steps can move the latents to a larger size; plain Euler a on the other steps."""

        gradual: GradualLatent | None = None
        full_size: tuple[int, int] = (0, 0)  # the image's latent (height, width)

        def configure(self, settings: GradualLatent, full_size: tuple[int, int]) -> None:
            self.gradual, self.full_size = settings, full_size

        def set_timesteps(self, *args, **kwargs):
            super().set_timesteps(*args, **kwargs)
            self._ratio = self.gradual.ratio if self.gradual else 1.0
            self._since_growth = 1000  # sd-scripts lets the first eligible step grow at once

        def _next_size(self, timestep) -> tuple[int, int] | None:
            g = self.gradual
            grow = g is not None and float(timestep) < g.timesteps and self._ratio < 1.0 and self._since_growth >= g.every_n_steps
            self._since_growth += 1
            if not grow:
                return None
            self._ratio = min(self._ratio + g.ratio_step, 1.0)
            self._since_growth = 1
            h, w = self.full_size
            return max(8, int(h * self._ratio) // 8 * 8), max(8, int(w * self._ratio) // 8 * 8)

        def step(self, model_output, timestep, sample, generator=None, return_dict: bool = True):
            size = self._next_size(timestep)
            if size is None:
                return super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)
            if self.step_index is None:
                self._init_step_index(timestep)
            g = self.gradual
            sigma_from, sigma_to = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
            sample = sample.to(torch.float32)
            if self.config.prediction_type == "v_prediction":
                denoised = model_output * (-sigma_from / (sigma_from**2 + 1) ** 0.5) + sample / (sigma_from**2 + 1)
            else:
                denoised = sample - sigma_from * model_output
            sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
            sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
            derivative = (sample - denoised) / sigma_from
            if g.unsharp and g.unsharp[3]:  # sharpen the stepped latents
                stepped = unsharp_mask(resize(sample + derivative * (sigma_down - sigma_from), size), g.unsharp)
            else:  # sharpen the sample only, then step at the new size (bicubic resizing is linear)
                stepped = unsharp_mask(resize(sample, size), g.unsharp) + resize(derivative, size) * (sigma_down - sigma_from)
            noise = randn_tensor((sample.shape[0], sample.shape[1], *size), dtype=model_output.dtype,
                                 device=model_output.device, generator=generator)
            prev_sample = (stepped + noise * sigma_up * g.s_noise).to(model_output.dtype)
            self._step_index += 1
            if not return_dict:
                return (prev_sample, denoised)
            return EulerAncestralDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=denoised)

    return GradualLatentEulerAncestral
