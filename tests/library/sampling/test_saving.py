"""Specification of output names, per-image metadata and the trainer's sample_images."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from library.models.tiny import build_tiny_components
from library.sampling.generate import GenerationDefaults, plan_images, sampling_model_from_components
from library.sampling.png_info import parse_parameters, read_png_text
from library.sampling.prompt_options import PromptSpec, parse_prompt_line
from library.sampling.saving import (
    gen_img_filename,
    image_parameters,
    next_sequential_number,
    sample_filename,
    sample_images,
    sequential_filename,
)

SMALL = GenerationDefaults(width=64, height=64, steps=2)


@pytest.fixture(scope="module")
def sd1():
    return sampling_model_from_components("sd1", build_tiny_components("sd1"), source="tiny-sd1")


def test_names_follow_sd_scripts():
    (job,) = plan_images([parse_prompt_line("a --d 42")], SMALL)
    assert gen_img_filename(job, "20240101120000") == "im_20240101120000_000_42.png"
    assert sequential_filename(7) == "im_000007.png"
    assert sample_filename("mychar", 500, 3, "20240101120000", 42) == "mychar_000500_03_20240101120000_42.png"
    assert sample_filename(None, 500, 0, "20240101120000", None) == "000500_00_20240101120000.png"
    assert sample_filename("m", 500, 1, "20240101120000", None, epoch=2) == "m_e000002_01_20240101120000.png"


def test_sequential_numbers_continue_after_existing_images(tmp_path):
    assert next_sequential_number(tmp_path) == 1
    for name in ("im_000001.png", "im_000009.png", "im_20240101_000_1.png", "other.png"):
        (tmp_path / name).touch()
    assert next_sequential_number(tmp_path) == 10


def test_metadata_lists_only_the_embeddings_the_prompt_uses():
    # trigger words match as prompts are encoded: whole word, exact case ("UNUSED" is plain text, not "unused")
    (job,) = plan_images([parse_prompt_line("a (mychar4:1.2) UNUSED cat --n bad-hands-5 --d 3 --ss k_euler_a")], SMALL)
    text, extra = image_parameters(job, family="sd1", model_name="m", clip_skip=2,
                                   ti_hashes={"mychar4": "aaaa", "bad-hands-5": "bbbb", "unused": "cccc"})
    parsed = parse_parameters(text)
    assert parsed["TI hashes"] == "mychar4: aaaa, bad-hands-5: bbbb"
    assert (parsed["Sampler"], parsed["Seed"], parsed["Size"], parsed["Clip skip"]) == ("Euler a", "3", "64x64", "2")
    assert extra["prompt"] == "a (mychar4:1.2) UNUSED cat" and extra["negative-prompt"] == "bad-hands-5" and extra["seed"] == "3"


def test_sample_images_writes_named_images_with_metadata_and_keeps_the_rng(sd1, tmp_path):
    specs = [parse_prompt_line("a cat --d 5 --w 64 --h 64 --s 2"), PromptSpec("a dog", width=64, height=64, steps=2)]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    paths = sample_images(sd1, specs, tmp_path / "sample", "mychar", 250, sampler="euler_a")
    assert torch.equal(torch.get_rng_state(), state)
    names = [p.name for p in paths]
    assert re.fullmatch(r"mychar_000250_00_\d{14}_5\.png", names[0])
    assert re.fullmatch(r"mychar_000250_01_\d{14}\.png", names[1])  # no seed given: none in the name
    parsed = parse_parameters(read_png_text(paths[0])["parameters"])
    assert (parsed["prompt"], parsed["Seed"], parsed["Sampler"], parsed["Model"]) == ("a cat", "5", "Euler a", "tiny-sd1")
    assert Image.open(paths[1]).size == (64, 64)


def test_sample_images_with_a_run_seed_repeat_across_calls(sd1, tmp_path):
    specs = [PromptSpec("a dog", width=64, height=64, steps=2)]
    first = sample_images(sd1, specs, tmp_path / "a", None, 1, seed=9, epoch=1)
    second = sample_images(sd1, specs, tmp_path / "b", None, 2, seed=9, epoch=2)
    assert re.fullmatch(r"e000001_00_\d{14}_\d+\.png", first[0].name)
    assert np.array_equal(np.asarray(Image.open(first[0])), np.asarray(Image.open(second[0])))
