"""Specification of sampler names -> diffusers schedulers built from the model's scheduler config."""

import importlib.util

import pytest
import torch

from library.errors import UserError
from library.models.tiny import build_tiny_components
from library.sampling.generate import GenerationDefaults, generate_images, sampling_model_from_components
from library.sampling.prompt_options import PromptSpec
from library.sampling.samplers import (
    ALIASES,
    SAMPLER_NAMES,
    SAMPLERS,
    a1111_sampler_name,
    canonical_sampler,
    check_sampler,
    make_sample_scheduler,
)

HAS_SCIPY = importlib.util.find_spec("scipy") is not None
EXPECTED_CLASSES = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpm_2": "KDPM2DiscreteScheduler",
    "dpm_2_a": "KDPM2AncestralDiscreteScheduler",
    "dpmsolver": "DPMSolverMultistepScheduler",
    "dpmsolver++": "DPMSolverMultistepScheduler",
    "dpmsingle": "DPMSolverSinglestepScheduler",
}


@pytest.fixture(scope="module")
def sd2_model():
    return sampling_model_from_components("sd2", build_tiny_components("sd2"))


def _needs_scipy(name):
    return canonical_sampler(name) == "lms" and not HAS_SCIPY


def test_the_names_are_sd_scripts_names():
    assert set(SAMPLERS) == set(EXPECTED_CLASSES)
    assert ALIASES == {"k_lms": "lms", "k_euler": "euler", "k_euler_a": "euler_a", "k_dpm_2": "dpm_2", "k_dpm_2_a": "dpm_2_a"}
    assert a1111_sampler_name("k_euler_a") == "Euler a"


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_scheduler_keeps_the_models_prediction_type_and_betas(name, sd2_model):
    if _needs_scipy(name):
        pytest.skip("scipy is not installed (the lms sampler needs it)")
    scheduler = make_sample_scheduler(name, sd2_model.noise_scheduler)
    assert type(scheduler).__name__ == EXPECTED_CLASSES[canonical_sampler(name)]
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.beta_end == 0.012


def test_prediction_type_can_be_overridden(sd2_model):
    assert make_sample_scheduler("euler", sd2_model.noise_scheduler, prediction_type="epsilon").config.prediction_type == "epsilon"
    assert make_sample_scheduler("dpmsolver", sd2_model.noise_scheduler.config).config.algorithm_type == "dpmsolver"


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_each_sampler_runs_two_steps(name, sd2_model):
    if _needs_scipy(name):
        pytest.skip("scipy is not installed (the lms sampler needs it)")
    spec = PromptSpec("a red cube", width=64, height=64, steps=2, seeds=(1,), sampler=name)
    ((image, job),) = generate_images(sd2_model, [spec], defaults=GenerationDefaults())
    assert image.size == (64, 64) and job.sampler == canonical_sampler(name)
    assert len(set(image.getdata())) > 1  # not a blank image


def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown sampler 'magic'; valid samplers are ddim, pndm, .*k_dpm_2_a"):
        make_sample_scheduler("magic", {})


@pytest.mark.skipif(HAS_SCIPY, reason="scipy is installed")
def test_lms_without_scipy_says_what_to_install():
    with pytest.raises(UserError, match=r"the k_lms sampler needs the package 'scipy'.*pip install scipy"):
        check_sampler("k_lms")
