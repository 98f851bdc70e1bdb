"""A procedural world of 64x64 images: one colored shape on a plain background, with a caption.

Every scene is "a {color} {shape} on a {background} background", drawn at a random position and size.
Scenes are deterministic from a numpy Generator, so a seed reproduces a dataset pixel for pixel.
One (color, shape) pair, HELD_OUT, is kept out of the toy model's training data, so Textual Inversion
has a concept to learn that the model's own words do not produce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # drawn at 4x and box-filtered down: antialiased edges without PIL's aliased polygons

# One RGB value per name, shared by shapes and backgrounds, far apart so that a blurred or slightly
# off-color generated image still lands on the right name.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
BACKGROUNDS = ("white", "black", "gray")

HELD_OUT = ("purple", "star")  # never in the toy model's training data; the Textual Inversion target

MIN_SIZE, MAX_SIZE = 22, 42  # side of the shape's square frame, in pixels
MARGIN = 2  # the border rows/columns stay background (the classifier reads the background there)

Concept = tuple[str, str]  # (color, shape)


@dataclass(frozen=True)
class Scene:
    """One image's content: shape, its color, the background, and the frame (center and side, pixels)."""

    shape: str
    color: str
    background: str
    cx: float
    cy: float
    size: float

    @property
    def concept(self) -> Concept:
        return (self.color, self.shape)


def combinations(include: Optional[Iterable[Concept]] = None, exclude: Iterable[Concept] = ()) -> list[tuple[str, str, str]]:
    """All drawable (color, shape, background) triples, restricted to `include` and without `exclude`.

    A shape never has its background's color (it would be invisible).
    """
    include = None if include is None else {tuple(c) for c in include}
    exclude = {tuple(c) for c in exclude}
    for color, shape in (include or set()) | exclude:
        if color not in COLORS or shape not in SHAPES:
            raise ValueError(f"unknown concept ({color!r}, {shape!r}); colors are {COLORS}, shapes {SHAPES}")
    triples = [
        (color, shape, bg)
        for color in COLORS
        for shape in SHAPES
        for bg in BACKGROUNDS
        if color != bg and (include is None or (color, shape) in include) and (color, shape) not in exclude
    ]
    if not triples:
        raise ValueError("include/exclude leave no scene to draw")
    return triples


def sample_scene(rng: np.random.Generator, include: Optional[Iterable[Concept]] = None, exclude: Iterable[Concept] = ()) -> Scene:
    """A random scene: (color, shape, background) uniform over the allowed triples, then frame."""
    triples = combinations(include, exclude)
    color, shape, background = triples[rng.integers(len(triples))]
    size = float(rng.uniform(MIN_SIZE, MAX_SIZE))
    lo, hi = size / 2 + MARGIN, IMAGE_SIZE - size / 2 - MARGIN
    cx, cy = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    return Scene(shape, color, background, cx, cy, size)


def _star_points(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    inner = r * 0.45  # fatter than a classic star (0.38) so the points survive a 64-px, blurry render
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else inner
        angle = -math.pi / 2 + i * math.pi / 5  # first point straight up
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, size: float, fill) -> None:
    h = size / 2
    x0, y0, x1, y1 = cx - h, cy - h, cx + h, cy + h
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif shape == "square":
        s = h * 0.85  # a square filling the whole frame looks much bigger than the other shapes
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "star":
        # a 5-point star's frame is taller than wide; shift it so it sits centered in its frame
        draw.polygon(_star_points(cx, cy + h * 0.1, h * 1.05), fill=fill)
    elif shape == "cross":
        arm = size / 6
        draw.rectangle([x0, cy - arm, x1, cy + arm], fill=fill)
        draw.rectangle([cx - arm, y0, cx + arm, y1], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render(scene: Scene) -> Image.Image:
    """The scene as a 64x64 RGB image."""
    k = SUPERSAMPLE
    big = Image.new("RGB", (IMAGE_SIZE * k, IMAGE_SIZE * k), PALETTE[scene.background])
    _draw_shape(ImageDraw.Draw(big), scene.shape, scene.cx * k, scene.cy * k, scene.size * k, PALETTE[scene.color])
    return big.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def shape_mask(shape: str, size: float = 32.0) -> np.ndarray:
    """Coverage (0..1, float32) of `shape` drawn centered in a 64x64 image; used for classifier templates."""
    k = SUPERSAMPLE
    big = Image.new("L", (IMAGE_SIZE * k, IMAGE_SIZE * k), 0)
    c = IMAGE_SIZE * k / 2
    _draw_shape(ImageDraw.Draw(big), shape, c, c, size * k, 255)
    return np.asarray(big.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX), dtype=np.float32) / 255.0


def caption(scene: Scene, subject: Optional[str] = None) -> str:
    """"a red star on a white background"; `subject` replaces "red star" (e.g. a new token: "a toyxstar on ...")."""
    subject = subject or f"{scene.color} {scene.shape}"
    article = "an" if subject[0] in "aeiou" else "a"  # "an orange cross"
    return f"{article} {subject} on a {scene.background} background"


def sample_scenes(n: int, seed: int, include: Optional[Iterable[Concept]] = None, exclude: Iterable[Concept] = ()) -> list[Scene]:
    """`n` scenes from one seed (the same seed and filters give the same scenes)."""
    rng = np.random.default_rng(seed)
    include = None if include is None else list(include)
    exclude = list(exclude)
    return [sample_scene(rng, include, exclude) for _ in range(n)]


def render_array(scenes: Iterable[Scene]) -> np.ndarray:
    """The scenes rendered into one uint8 array (N, 64, 64, 3)."""
    return np.stack([np.asarray(render(s)) for s in scenes])


def make_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    include: Optional[Iterable[Concept]] = None,
    exclude: Iterable[Concept] = (),
    caption_fn: Callable[[Scene], str] = caption,
    caption_extension: str = ".txt",
) -> list[Scene]:
    """Write `n` scenes as `00000.png` + `00000.txt` (caption) pairs into `out_dir`; returns the scenes.

    `include`/`exclude` restrict the (color, shape) concepts drawn; `caption_fn` writes each caption
    (e.g. `lambda s: caption(s, subject="toyxstar")` for a Textual Inversion set of the held-out concept).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = sample_scenes(n, seed, include, exclude)
    for i, scene in enumerate(scenes):
        render(scene).save(out_dir / f"{i:05d}.png")
        (out_dir / f"{i:05d}{caption_extension}").write_text(caption_fn(scene) + "\n", encoding="utf-8")
    return scenes
