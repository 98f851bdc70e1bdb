"""Specification of the toy world: deterministic scenes, captions, the held-out concept, dataset files."""

import numpy as np
import pytest

from library.toyworld.world import (
    BACKGROUNDS,
    COLORS,
    HELD_OUT,
    IMAGE_SIZE,
    MARGIN,
    PALETTE,
    SHAPES,
    caption,
    combinations,
    make_dataset,
    render,
    render_array,
    sample_scenes,
)


def test_same_seed_same_pixels_other_seed_other_pixels():
    a, b = render_array(sample_scenes(20, seed=3)), render_array(sample_scenes(20, seed=3))
    assert a.shape == (20, IMAGE_SIZE, IMAGE_SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render_array(sample_scenes(20, seed=4)))


def test_captions_name_color_shape_and_background():
    scene = sample_scenes(1, seed=0, include=[("red", "star")])[0]
    assert caption(scene) == f"a red star on a {scene.background} background"
    orange = sample_scenes(1, seed=0, include=[("orange", "cross")])[0]
    assert caption(orange).startswith("an orange cross on a ")
    assert caption(scene, subject="toyxstar") == f"a toyxstar on a {scene.background} background"


def test_border_is_background_and_shape_has_its_color():
    for scene in sample_scenes(50, seed=1):
        image = np.asarray(render(scene))
        assert (image[:MARGIN] == PALETTE[scene.background]).all() and (image[:, -MARGIN:] == PALETTE[scene.background]).all()
        assert (image.reshape(-1, 3) == PALETTE[scene.color]).all(axis=1).sum() > 100  # solid interior pixels


def test_every_combination_is_drawable_except_invisible_ones():
    triples = combinations()
    assert len(triples) == len(COLORS) * len(SHAPES) * len(BACKGROUNDS) - 2 * len(SHAPES)  # white/white, black/black
    assert all(color != bg for color, _, bg in triples)


def test_excluding_the_held_out_concept_never_draws_it():
    scenes = sample_scenes(500, seed=2, exclude=[HELD_OUT])
    assert HELD_OUT not in {s.concept for s in scenes}
    assert {s.color for s in scenes} == set(COLORS) and {s.shape for s in scenes} == set(SHAPES)


def test_include_draws_only_the_concept():
    assert {s.concept for s in sample_scenes(30, seed=5, include=[HELD_OUT])} == {HELD_OUT}


def test_unknown_concept_is_refused():
    with pytest.raises(ValueError, match="unknown concept"):
        combinations(include=[("pink", "star")])


def test_make_dataset_writes_image_caption_pairs(tmp_path):
    scenes = make_dataset(tmp_path, 4, seed=7, include=[HELD_OUT], caption_fn=lambda s: caption(s, subject="toyxstar"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"0000{i}{ext}" for i in range(4) for ext in (".png", ".txt")]
    assert (tmp_path / "00002.txt").read_text() == caption(scenes[2], subject="toyxstar") + "\n"
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(tmp_path / "00002.png")), np.asarray(render(scenes[2])))
