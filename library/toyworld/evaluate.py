"""Scoring a text-to-image pipeline on the toy world with the pixel classifier.

`prompt_following`: how often generated images show the color, shape and background that their prompt names.
`concept_rate`: how often images for one prompt show a given (color, shape) concept; the Textual Inversion
metric compares it for "a toyxstar on a white background" against the init word alone ("a star on ...").
`classifier_accuracy`: the classifier itself on fresh renders, clean and blurred/noised like generated images.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter

from library.toyworld import classifier
from library.toyworld.world import HELD_OUT, Scene, caption, render, sample_scenes

DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 5.0


def generate_images(
    pipe,
    prompts: Sequence[str],
    seed: int,
    num_inference_steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE,
    batch_size: int = 32,
) -> list[Image.Image]:
    """One 64x64 image per prompt; batch `i` uses generator seed `seed + i`, so results are reproducible."""
    images: list[Image.Image] = []
    for i in range(0, len(prompts), batch_size):
        generator = torch.Generator("cpu").manual_seed(seed + i // batch_size)
        out = pipe(
            list(prompts[i : i + batch_size]),
            height=64,
            width=64,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
        )
        images.extend(out.images)
    return images


def seen_scenes(n: int, seed: int, held_out: Sequence[tuple[str, str]] = (HELD_OUT,)) -> list[Scene]:
    """Scenes of combinations the toy model was trained on (everything but its held-out pairs)."""
    return sample_scenes(n, seed, exclude=list(held_out))


def prompt_following(pipe, scenes: Sequence[Scene], seed: int = 0, **generate_kwargs) -> dict[str, float]:
    """Color, shape, both and background accuracy of images generated from the scenes' captions."""
    images = generate_images(pipe, [caption(s) for s in scenes], seed, **generate_kwargs)
    predictions = [classifier.classify(image) for image in images]
    scores = classifier.accuracy(predictions, [s.concept for s in scenes])
    scores["background"] = sum(p.background == s.background for p, s in zip(predictions, scenes)) / len(scenes)
    return scores


def concept_rate(pipe, prompt: str, concept: tuple[str, str], n: int, seed: int = 0, background: str | None = None, **generate_kwargs) -> float:
    """Fraction of `n` images for `prompt` that show `concept` (and `background`, if given)."""
    images = generate_images(pipe, [prompt] * n, seed, **generate_kwargs)
    return classifier.concept_rate([classifier.classify(image) for image in images], concept, background)


# (Gaussian blur radius, noise sigma): generated images are softer and noisier than renders
DEGRADATIONS = ((0.0, 0.0), (1.0, 0.0), (1.5, 10.0), (2.0, 15.0), (2.5, 10.0), (1.0, 25.0))


def degrade(image: Image.Image, rng: np.random.Generator, blur: float, noise: float) -> Image.Image:
    """`image` blurred by `blur` px and with Gaussian pixel noise of sigma `noise` (0-255 scale)."""
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(blur)) if blur else image, dtype=np.float32)
    pixels = pixels + rng.normal(0, noise, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def classifier_accuracy(n: int = 1000, seed: int = 12345) -> list[dict[str, float]]:
    """Color and shape accuracy of the classifier on `n` fresh scenes, once per entry of DEGRADATIONS."""
    scenes = sample_scenes(n, seed)
    renders = [render(s) for s in scenes]
    rows = []
    for blur, noise in DEGRADATIONS:
        rng = np.random.default_rng(seed)
        predictions = [classifier.classify(degrade(image, rng, blur, noise)) for image in renders]
        rows.append({"blur": blur, "noise": noise, **classifier.accuracy(predictions, [s.concept for s in scenes])})
    return rows
