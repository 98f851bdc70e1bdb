"""Specification of the model-family adapters: every SD-vs-SDXL decision of a training run, in one place."""

from __future__ import annotations

import argparse

import pytest

from library.errors import UserError
from library.training.family import ConditioningSettings, SDFamily, SDXLFamily, family_for, family_for_script

# sd-scripts' modelspec architecture names (library/sai_model_spec.py, ARCH_SD_V1 / ARCH_SD_V2_512 /
# ARCH_SD_V2_768_V / ARCH_SD_XL_V1_BASE), by (family, v-parameterization)
SD_SCRIPTS_ARCHITECTURES = {
    ("sd1", False): "stable-diffusion-v1",
    ("sd1", True): "stable-diffusion-v1",
    ("sd2", False): "stable-diffusion-v2-512",
    ("sd2", True): "stable-diffusion-v2-768-v",
    ("sdxl", False): "stable-diffusion-xl-v1-base",
    ("sdxl", True): "stable-diffusion-xl-v1-base",
}


@pytest.mark.parametrize(("family", "v"), sorted(SD_SCRIPTS_ARCHITECTURES))
def test_modelspec_architecture_follows_sd_scripts(family, v):
    assert family_for(family).modelspec_architecture(v) == SD_SCRIPTS_ARCHITECTURES[(family, v)]


def test_each_family_names_its_slots_script_resolution_and_summary_name():
    sd1, sd2, sdxl = family_for("sd1"), family_for("sd2"), family_for("sdxl")
    assert (sd1.slots, sd1.script, sd1.default_resolution, sd1.display_name) == (("emb_params",), "train_textual_inversion.py", (512, 512), "SD 1.x")
    assert sd2.display_name == "SD 2.x" and sd2.slots == ("emb_params",)
    assert (sdxl.slots, sdxl.script, sdxl.default_resolution, sdxl.display_name) == (("clip_l", "clip_g"), "sdxl_train_textual_inversion.py", (1024, 1024), "SDXL")


def test_a_script_expects_its_family_before_the_model_is_loaded():
    # the SD script lets load_models refuse an SDXL file from its keys; the SDXL script detects and checks afterwards
    assert isinstance(family_for_script(False), SDFamily) and family_for_script(False).load_as_sdxl is False
    assert isinstance(family_for_script(True), SDXLFamily) and family_for_script(True).load_as_sdxl is None


def test_which_encoders_train():
    assert SDFamily().trained_encoders(None) == [True]
    assert SDFamily().trained_encoders("g") == [True]  # SD has one encoder; the SDXL flag does not exist there
    assert SDXLFamily().trained_encoders(None) == [True, True]
    assert SDXLFamily().trained_encoders("l,g") == [True, True]
    assert SDXLFamily().trained_encoders(" G ") == [False, True]
    assert SDXLFamily().trained_encoders("l") == [True, False]
    for bad in ("x", "l,x", ","):
        with pytest.raises(UserError, match="--ti_text_encoders"):
            SDXLFamily().trained_encoders(bad)


def test_conditioning_settings_are_the_adapters_keyword_arguments():
    settings = ConditioningSettings.from_args(argparse.Namespace(max_token_length=150, clip_skip=2))
    assert settings.as_kwargs() == {"max_token_length": 150, "clip_skip": 2}
