"""A deterministic pixel classifier for toy-world images: background, shape color and shape.

No learned weights. The background is the border's median color; the shape is the largest connected
region that differs from it (thresholded at half its contrast, which keeps outlines where a blur puts
them); its color is the nearest palette name of its core's median; its shape is the nearest of the
world's own shapes after both are cropped to their bounding box and resized to one small grid. The templates include each shape blurred and thresholded the
same way, so a soft-edged star (whose half-contrast outline is rounder) still matches a star, not a circle.
Works on renders and on generated images (blurry, noisy, slightly off-color).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Optional

import numpy as np
from PIL import Image

from library.toyworld.world import BACKGROUNDS, COLORS, IMAGE_SIZE, PALETTE, SHAPES, shape_mask

GRID = 20  # side of the normalized mask that shapes are compared on
TEMPLATE_SIZES = (22.0, 27.0, 32.0, 37.0, 42.0)  # the world's shape sides span 22-42 px
TEMPLATE_BLURS = (0.0, 1.0, 2.0, 3.0)  # Gaussian sigmas (pixels): generated images are soft-edged
MIN_CONTRAST = 40.0  # RGB distance below which nothing is drawn (an empty image)
NONE = "none"  # color/shape when no foreground is found


@dataclass(frozen=True)
class Prediction:
    color: str
    shape: str
    background: str

    @property
    def concept(self) -> tuple[str, str]:
        return (self.color, self.shape)


def _nearest_name(rgb: np.ndarray, names: Iterable[str]) -> str:
    names = list(names)
    table = np.array([PALETTE[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((table - rgb) ** 2).sum(axis=1)))]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask (a generated image may have specks)."""
    h, w = mask.shape
    labels = np.zeros(mask.shape, dtype=np.int32)
    best_label, best_size, label = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        label += 1
        labels[y0, x0] = label
        queue, size = deque([(y0, x0)]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    queue.append((ny, nx))
        if size > best_size:
            best_label, best_size = label, size
    return labels == best_label


def _normalized(mask: np.ndarray) -> np.ndarray:
    """The mask cropped to its bounding box and resized to GRID x GRID (float, 0..1)."""
    ys, xs = np.nonzero(mask > 0.5)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
    return np.asarray(Image.fromarray(crop, mode="F").resize((GRID, GRID), Image.Resampling.BILINEAR))


def _blurred_outline(coverage: np.ndarray, sigma: float) -> np.ndarray:
    """The region a query would get from this shape after a blur: above half of its peak."""
    if sigma:
        from scipy.ndimage import gaussian_filter

        coverage = gaussian_filter(coverage, sigma)
    return coverage > 0.5 * coverage.max()


@lru_cache(maxsize=1)
def _templates() -> np.ndarray:
    """(len(SHAPES), sizes x blurs, GRID, GRID): each shape normalized as a query would be."""
    return np.stack([
        [_normalized(_blurred_outline(shape_mask(shape, size), sigma)) for size in TEMPLATE_SIZES for sigma in TEMPLATE_BLURS]
        for shape in SHAPES
    ])


def classify_shape_mask(mask: np.ndarray) -> str:
    """The world shape whose normalized mask is closest (mean squared difference) to `mask`."""
    query = _normalized(mask)
    distances = ((_templates() - query) ** 2).mean(axis=(2, 3)).min(axis=1)
    return SHAPES[int(np.argmin(distances))]


def classify(image: Image.Image | np.ndarray) -> Prediction:
    """Background, color and shape of one toy-world image (PIL image or HxWx3 array, resized to 64x64)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    image = image.convert("RGB")
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)

    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3), pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    bg_rgb = np.median(border, axis=0)
    background = _nearest_name(bg_rgb, BACKGROUNDS)

    distance = np.sqrt(((pixels - bg_rgb) ** 2).sum(axis=2))
    if distance.max() < MIN_CONTRAST:
        return Prediction(NONE, NONE, background)
    # the shape's contrast: the typical distance of its clearly-foreground pixels
    contrast = float(np.median(distance[distance > 0.5 * distance.max()]))
    region = _largest_component(distance > 0.5 * contrast)
    core = region & (distance > 0.75 * contrast)  # leave out antialiased/blurred edge pixels
    color = _nearest_name(np.median(pixels[core if core.any() else region], axis=0), COLORS)
    return Prediction(color, classify_shape_mask(region), background)


def accuracy(predictions: Iterable[Prediction], truths: Iterable[tuple[str, str]]) -> dict[str, float]:
    """Color, shape and both-correct accuracy of predictions against (color, shape) truths."""
    pairs = list(zip(predictions, truths))
    if not pairs:
        raise ValueError("no predictions to score")
    n = len(pairs)
    return {
        "color": sum(p.color == c for p, (c, _) in pairs) / n,
        "shape": sum(p.shape == s for p, (_, s) in pairs) / n,
        "both": sum(p.concept == (c, s) for p, (c, s) in pairs) / n,
    }


def concept_rate(predictions: Iterable[Prediction], concept: tuple[str, str], background: Optional[str] = None) -> float:
    """Fraction of predictions showing `concept` (color, shape) (and `background`, if given)."""
    predictions = list(predictions)
    hits = [p.concept == tuple(concept) and (background is None or p.background == background) for p in predictions]
    return sum(hits) / len(hits)
