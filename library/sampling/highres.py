"""High-resolution fix (sd-scripts' `--highres_fix_*`): draw small, upscale, then img2img at the full size.

The first stage renders each image at `scale` of its size (rounded down to a multiple of 32, as sd-scripts) with
`steps` steps (and, for img2img, `strength` or the image's own strength); its result is upscaled to the full size,
as an image with LANCZOS or, with `latents_upscaling`, as latents (bilinear), and the second stage runs img2img
on it at the full size with the image's own steps and strength, seeded with the image's seed + 1. SDXL's original
size and crop conditioning are scaled with the first stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from library.sampling.generate import ImageJob


@dataclass(frozen=True)
class HighresFix:
    scale: float
    steps: int = 28
    strength: float | None = None
    save_first: bool = False
    latents_upscaling: bool = False


def _scaled(value: int, scale: float) -> int:
    return int(value * scale + 0.5)


def first_stage_job(job: "ImageJob", fix: HighresFix) -> "ImageJob":
    """The small first-stage version of `job`."""
    width, height = _scaled(job.width, fix.scale), _scaled(job.height, fix.scale)
    width, height = max(32, width - width % 32), max(32, height - height % 32)
    scale2 = lambda pair: (_scaled(pair[0], fix.scale), _scaled(pair[1], fix.scale))  # noqa: E731
    return replace(job, width=width, height=height, steps=fix.steps,
                   strength=job.strength if fix.strength is None else fix.strength,
                   original_size=scale2(job.original_size), negative_original_size=scale2(job.negative_original_size),
                   crop_top_left=scale2(job.crop_top_left))


def second_stage_job(job: "ImageJob") -> "ImageJob":
    """The full-size img2img pass: the image's own settings, the next seed (sd-scripts)."""
    return replace(job, seed=(job.seed + 1) % 2**32)
