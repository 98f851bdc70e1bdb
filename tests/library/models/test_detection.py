"""Specification of family and prediction-type detection, and how --v2 / --sdxl / --v_parameterization apply."""

import json
import logging

import pytest
import torch

from library.errors import UserError
from library.models.detection import Detection, detect_checkpoint, detect_diffusers_dir, resolve

ATTN2 = "model.diffusion_model.input_blocks.{}.1.transformer_blocks.0.attn2.to_k.weight"
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"


def keys(*names, **shapes):
    """key -> shape; names get a dummy shape."""
    return {**{n: (1,) for n in names}, **shapes}


SD1 = keys(UNET_KEY, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
           **{ATTN2.format(1): (320, 768)})
SD2 = keys(UNET_KEY, "cond_stage_model.model.token_embedding.weight", "cond_stage_model.model.positional_embedding",
           **{ATTN2.format(1): (320, 1024)})
SDXL = keys(UNET_KEY, "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
            "conditioner.embedders.1.model.positional_embedding", "model.diffusion_model.label_emb.0.0.weight",
            **{ATTN2.format(4): (640, 2048)})


@pytest.mark.parametrize(
    "state, family, reason",
    [
        (SD1, "sd1", "cond_stage_model.transformer"),
        (SD2, "sd2", "cond_stage_model.model"),
        (SDXL, "sdxl", "conditioner.embedders.1"),
        # no text encoder keys: the UNet's cross-attention width decides
        (keys(UNET_KEY, **{ATTN2.format(1): (320, 768)}), "sd1", "768"),
        (keys(UNET_KEY, **{ATTN2.format(1): (320, 1024)}), "sd2", "1024"),
        (keys(UNET_KEY, **{ATTN2.format(4): (640, 2048)}), "sdxl", "2048"),
        (keys(UNET_KEY, **{ATTN2.format(1): (32, 48)}), None, "no known text encoder"),
    ],
)
def test_family_from_keys(state, family, reason):
    found = detect_checkpoint(state)
    assert found.family == family and reason in found.reason
    assert found.v_parameterization is None  # no metadata: the file does not say


def test_detection_accepts_tensors():
    state = {UNET_KEY: torch.zeros(1), ATTN2.format(1): torch.zeros(320, 1024)}
    assert detect_checkpoint(state).family == "sd2"


@pytest.mark.parametrize(
    "metadata, extra_key, expected",
    [
        ({"modelspec.prediction_type": "v"}, None, True),
        ({"modelspec.prediction_type": "epsilon"}, None, False),
        ({"modelspec.architecture": "stable-diffusion-v2-768-v"}, None, True),
        ({"modelspec.architecture": "stable-diffusion-v2-512"}, None, False),
        ({}, "v_pred", True),  # the marker key of v-prediction SDXL models
        ({"modelspec.title": "x"}, None, None),
    ],
)
def test_prediction_type_from_metadata(metadata, extra_key, expected):
    state = dict(SD2, **({extra_key: (0,)} if extra_key else {}))
    assert detect_checkpoint(state, metadata).v_parameterization is expected


@pytest.mark.parametrize(
    "state, message",
    [
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}, "a LoRA"),
        ({"emb_params": (4, 768)}, "textual-inversion embedding"),
        ({"clip_l": (4, 768), "clip_g": (4, 1280)}, "textual-inversion embedding"),
        ({"down_blocks.0.resnets.0.conv1.weight": (320, 320, 3, 3)}, "diffusers model directory"),
        ({"backbone.layer1.weight": (3, 3)}, "not a Stable Diffusion"),
        ({}, "no tensors"),
        (keys("conditioner.embedders.0.model.positional_embedding", UNET_KEY), "SDXL refiner"),
        (dict(SD1, **{UNET_KEY: (320, 9, 3, 3)}), "inpainting"),
    ],
)
def test_files_that_are_not_models_are_named(state, message):
    with pytest.raises(UserError, match=message):
        detect_checkpoint(state)


def _dir(tmp_path, *, act=None, text_encoder_2=False, prediction=None, cross=None):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "X", **({"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]} if text_encoder_2 else {})}))
    for sub, name, cfg in [("text_encoder", "config.json", {"hidden_act": act} if act else None),
                           ("scheduler", "scheduler_config.json", {"prediction_type": prediction} if prediction else None),
                           ("unet", "config.json", {"cross_attention_dim": cross} if cross else None)]:
        if cfg is not None:
            (tmp_path / sub).mkdir()
            (tmp_path / sub / name).write_text(json.dumps(cfg))
    return tmp_path


@pytest.mark.parametrize(
    "setup, family, v",
    [
        (dict(act="quick_gelu", prediction="epsilon"), "sd1", False),
        (dict(act="gelu", prediction="v_prediction"), "sd2", True),
        (dict(act="gelu"), "sd2", None),
        (dict(act="quick_gelu", text_encoder_2=True, prediction="epsilon"), "sdxl", False),
        (dict(cross=1024), "sd2", None),
        (dict(cross=33), None, None),
    ],
)
def test_diffusers_dir_detection(tmp_path, setup, family, v):
    found = detect_diffusers_dir(_dir(tmp_path, **setup))
    assert (found.family, found.v_parameterization) == (family, v)


def _resolve(detection, **flags):
    flags = {"v2": None, "sdxl": None, "v_parameterization": None, "single_file": True, **flags}
    return resolve(detection, "model.safetensors", **flags)


SD1_FOUND = Detection("sd1", None, "CLIP keys")
SD2_FOUND = Detection("sd2", None, "OpenCLIP keys")
SDXL_FOUND = Detection("sdxl", None, "SDXL keys")
UNKNOWN = Detection(None, None, "odd keys")


@pytest.mark.parametrize(
    "detection, flags, expected",
    [
        (SD1_FOUND, {}, ("sd1", False)),
        (SD2_FOUND, {"v2": True}, ("sd2", False)),  # sd-scripts: --v2 alone is the 512 (epsilon) model
        (SD2_FOUND, {"v2": True, "v_parameterization": True}, ("sd2", True)),
        (SD2_FOUND, {"v2": False}, ("sd2", False)),  # an absent store_true flag is not a "no"
        (Detection("sd2", True, "k"), {}, ("sd2", True)),  # metadata says v
        (Detection("sd2", True, "k"), {"v_parameterization": False}, ("sd2", False)),  # the flag wins
        (SDXL_FOUND, {"sdxl": True}, ("sdxl", False)),
        (UNKNOWN, {"v2": True}, ("sd2", False)),  # the flag decides what files cannot tell
        (UNKNOWN, {"sdxl": True}, ("sdxl", False)),
    ],
)
def test_resolve(detection, flags, expected):
    assert _resolve(detection, **flags) == expected


@pytest.mark.parametrize(
    "detection, flags, message",
    [
        (SD1_FOUND, {"v2": True}, "--v2 was given but this is an SD 1.x model"),
        (SD1_FOUND, {"sdxl": True}, "--sdxl was given but this is an SD 1.x model"),
        (SDXL_FOUND, {"v2": True}, "--v2 was given but this is an SDXL model"),
        (SDXL_FOUND, {"sdxl": False}, "use the SDXL script"),
        (SD2_FOUND, {"v2": True, "sdxl": True}, "cannot both be given"),
        (UNKNOWN, {}, "cannot tell whether"),
    ],
)
def test_resolve_refuses_contradictions(detection, flags, message):
    with pytest.raises(UserError, match=message):
        _resolve(detection, **flags)


def test_sd2_single_file_without_prediction_type_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert _resolve(SD2_FOUND) == ("sd2", False)
    assert "--v_parameterization" in caplog.text
