"""The starting noise of txt2img: drawn per image from its seed, optionally with noise offset or pyramid noise.

sd-scripts' gen_img options: with probability `pyramid_prob`, pyramid (multi-resolution) noise with a discount drawn
uniformly from `pyramid_discount_range`; with probability `offset_prob`, a constant offset added to every value,
drawn as `randn() * (max - min) + min` over `offset_range` (sd-scripts draws it with randn, not rand; kept).
Both draws come from a generator seeded with the image's seed, so an image stays reproducible from its seed.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoiseSettings:
    offset_prob: float | None = None
    offset_range: tuple[float, float] | None = None
    pyramid_prob: float | None = None
    pyramid_discount_range: tuple[float, float] | None = None

    @property
    def active(self) -> bool:
        return self.offset_prob is not None or self.pyramid_prob is not None


def image_noise(seed: int, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The noise diffusers' pipelines draw for one image (CPU generator seeded with `seed`), batch dimension 1."""
    return torch.randn((1, *shape), generator=torch.Generator("cpu").manual_seed(seed), dtype=dtype)


def pyramid_noise(noise: torch.Tensor, generator: torch.Generator, rng: random.Random, discount: float,
                  iterations: int = 6) -> torch.Tensor:
    """Add ever coarser noise layers, each `discount` times weaker, then rescale to unit std (sd-scripts' scheme)."""
    b, c, h, w = noise.shape
    out = noise.clone()
    for i in range(iterations):
        r = rng.random() * 2 + 2  # each layer 2-4 times coarser than the last
        hn, wn = max(1, int(h / (r**i))), max(1, int(w / (r**i)))
        layer = torch.randn((b, c, hn, wn), generator=generator, dtype=noise.dtype)
        out = out + F.interpolate(layer, size=(h, w), mode="bilinear") * discount**i
        if hn == 1 or wn == 1:
            break
    return out / out.std()


def starting_noise(seed: int, shape: tuple[int, ...], settings: NoiseSettings | None, dtype=torch.float32) -> torch.Tensor:
    """One image's starting noise: plain, or with the pyramid/offset options applied by their probabilities."""
    noise = image_noise(seed, shape, dtype)
    if settings is None or not settings.active:
        return noise
    rng = random.Random(seed)
    generator = torch.Generator("cpu").manual_seed(seed + 1)  # not the image noise's stream
    if settings.pyramid_prob is not None and rng.random() < settings.pyramid_prob:
        low, high = settings.pyramid_discount_range
        discount = rng.random() * (high - low) + low
        logger.info("seed %d: pyramid noise, discount %.3f", seed, discount)
        noise = pyramid_noise(noise, generator, rng, discount)
    if settings.offset_prob is not None and rng.random() < settings.offset_prob:
        low, high = settings.offset_range
        offset = float(torch.randn(1, generator=generator)) * (high - low) + low
        logger.info("seed %d: noise offset %.4f", seed, offset)
        noise = noise + offset
    return noise
