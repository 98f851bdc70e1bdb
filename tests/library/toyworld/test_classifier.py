"""Specification of the pixel classifier: accurate on fresh renders, robust to blur and noise."""

import numpy as np
from PIL import Image

from library.toyworld.classifier import NONE, accuracy, classify, concept_rate
from library.toyworld.evaluate import classifier_accuracy, degrade
from library.toyworld.world import PALETTE, render, sample_scenes


def test_accuracy_on_fresh_scenes():
    scenes = sample_scenes(200, seed=2024)
    predictions = [classify(render(s)) for s in scenes]
    scores = accuracy(predictions, [s.concept for s in scenes])
    assert scores["color"] >= 0.95 and scores["shape"] >= 0.95
    assert all(p.background == s.background for p, s in zip(predictions, scenes))


def test_robust_to_blur_and_noise_like_generated_images():
    rng = np.random.default_rng(0)
    scenes = sample_scenes(200, seed=99)
    predictions = [classify(degrade(render(s), rng, blur=1.5, noise=10)) for s in scenes]
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
        predictions = [classify(degrade(render(s), rng, blur=2.5, noise=10)) for s in scenes]
        assert sum(p.shape == shape for p in predictions) / len(scenes) >= 0.97, shape


def test_the_reported_accuracy_table_is_what_the_classifier_does():
    rows = classifier_accuracy(n=60, seed=3)
    assert [(r["blur"], r["noise"]) for r in rows][0] == (0.0, 0.0)
    assert rows[0]["color"] == rows[0]["shape"] == 1.0  # clean renders
    assert all(0.9 <= r["color"] <= 1 and 0.9 <= r["shape"] <= 1 for r in rows)

