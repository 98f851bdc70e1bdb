"""Scoring a text-to-image pipeline on the toy world with the pixel classifier.

`prompt_following`: how often generated images show the color, shape and background that their prompt names.
`concept_rate`: how often images for one prompt show a given (color, shape) concept; the Textual Inversion
metric compares it for "a toyxstar on a white background" against the init word alone ("a star on ...").
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from library.toyworld import classifier
from library.toyworld.world import HELD_OUT, Scene, caption, sample_scenes

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


def seen_scenes(n: int, seed: int) -> list[Scene]:
    """Scenes of combinations the toy model was trained on (everything but the held-out concept)."""
    return sample_scenes(n, seed, exclude=[HELD_OUT])


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
