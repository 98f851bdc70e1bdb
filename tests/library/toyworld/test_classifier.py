"""Specification of the pixel classifier: accurate on fresh renders, robust to blur and noise."""

import numpy as np
from PIL import Image, ImageFilter

from library.toyworld.classifier import NONE, accuracy, classify, concept_rate
from library.toyworld.world import PALETTE, render, sample_scenes


def _degrade(image: Image.Image, rng: np.random.Generator, blur: float, noise: float) -> Image.Image:
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    pixels = pixels + rng.normal(0, noise, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def test_accuracy_on_fresh_scenes():
    scenes = sample_scenes(200, seed=2024)
    predictions = [classify(render(s)) for s in scenes]
    scores = accuracy(predictions, [s.concept for s in scenes])
    assert scores["color"] >= 0.95 and scores["shape"] >= 0.95
    assert all(p.background == s.background for p, s in zip(predictions, scenes))


def test_robust_to_blur_and_noise_like_generated_images():
    rng = np.random.default_rng(0)
    scenes = sample_scenes(200, seed=99)
    predictions = [classify(_degrade(render(s), rng, blur=1.5, noise=10)) for s in scenes]
    scores = accuracy(predictions, [s.concept for s in scenes])
    assert scores["color"] >= 0.95 and scores["shape"] >= 0.95


def test_other_sizes_and_arrays_are_accepted():
    scene = sample_scenes(1, seed=8)[0]
    big = render(scene).resize((128, 128), Image.Resampling.BICUBIC)
    assert classify(big).concept == scene.concept
    assert classify(np.asarray(render(scene))).concept == scene.concept


def test_empty_image_has_no_shape():
    prediction = classify(Image.new("RGB", (64, 64), PALETTE["gray"]))
    assert (prediction.color, prediction.shape, prediction.background) == (NONE, NONE, "gray")
    assert concept_rate([prediction], ("red", "star")) == 0.0


def test_soft_edged_stars_still_read_as_stars_and_circles_as_circles():
    # a blur rounds a star's half-contrast outline; the blurred templates keep it apart from a circle
    rng = np.random.default_rng(1)
    for shape in ("star", "circle"):
        scenes = [s for s in sample_scenes(300, seed=5) if s.shape == shape]
        predictions = [classify(_degrade(render(s), rng, blur=2.5, noise=10)) for s in scenes]
        assert sum(p.shape == shape for p in predictions) / len(scenes) >= 0.97, shape
