"""Which model family (SD1 / SD2 / SDXL) and prediction type a checkpoint or diffusers directory holds.

Pure functions over key names, tensor shapes, safetensors metadata and config JSON, so each rule has a
small test. `resolve` applies the user's --v2 / --sdxl / --v_parameterization on top, as sd-scripts does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from library.errors import UserError

logger = logging.getLogger(__name__)

FAMILIES = ("sd1", "sd2", "sdxl")
FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
_CROSS_ATTENTION_DIMS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


@dataclass(frozen=True)
class Detection:
    """What the files say. family None: cannot tell; v_parameterization None: the files do not say."""

    family: str | None
    v_parameterization: bool | None
    reason: str  # shown to the user, e.g. "OpenCLIP text encoder keys (cond_stage_model.model.*)"


def _has_prefix(keys, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def detect_checkpoint(shapes: Mapping[str, tuple], metadata: Mapping[str, str] | None = None) -> Detection:
    """Family from an original-format state dict's keys (key -> shape; tensors work too), prediction from metadata."""
    keys = shapes.keys()
    v = _prediction_from_metadata(metadata or {}, keys)
    conv_in = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is not None and len(tuple(getattr(conv_in, "shape", conv_in))) == 4:
        channels = tuple(getattr(conv_in, "shape", conv_in))[1]
        if channels != 4:
            raise UserError(f"the UNet takes {channels} input channels, not 4: this is an inpainting or "
                            "instruct-pix2pix model, which textual inversion here does not support; use the base model")
    if _has_prefix(keys, "conditioner.embedders.1."):
        return Detection("sdxl", v, "SDXL text encoder 2 keys (conditioner.embedders.1.*)")
    if _has_prefix(keys, "conditioner.embedders.0.model."):
        raise UserError("this is an SDXL refiner checkpoint (one OpenCLIP text encoder under conditioner.embedders.0); "
                        "textual inversion needs the SDXL base model")
    if _has_prefix(keys, "cond_stage_model.model."):
        return Detection("sd2", v, "OpenCLIP text encoder keys (cond_stage_model.model.*)")
    if _has_prefix(keys, "cond_stage_model.transformer."):
        return Detection("sd1", v, "CLIP text encoder keys (cond_stage_model.transformer.*)")
    # no text encoder keys: fall back to the UNet's cross-attention width
    for key in keys:
        if key.startswith("model.diffusion_model.") and key.endswith("attn2.to_k.weight"):
            dim = tuple(getattr(shapes[key], "shape", shapes[key]))[-1]
            if dim in _CROSS_ATTENTION_DIMS:
                return Detection(_CROSS_ATTENTION_DIMS[dim], v, f"UNet cross-attention width {dim}")
    if _has_prefix(keys, "model.diffusion_model."):
        return Detection(None, v, "UNet keys (model.diffusion_model.*) but no known text encoder keys")
    raise UserError(_not_a_model_message(keys))


def _not_a_model_message(keys) -> str:
    """Name the kind of file we were given, when it is recognisably something else."""
    keys = list(keys)
    if not keys:
        return "the file holds no tensors; it is not a Stable Diffusion checkpoint"
    if any(k.startswith(("lora_unet_", "lora_te", "lora_te1_", "lora_te2_")) for k in keys):
        kind = "a LoRA, not a full model"
    elif set(keys) <= {"emb_params", "clip_l", "clip_g", "string_to_param", "*"} or any(k.startswith("string_to_param") for k in keys):
        kind = "a textual-inversion embedding, not a full model"
    elif _has_prefix(keys, "down_blocks.") or _has_prefix(keys, "text_model.") or _has_prefix(keys, "encoder.down"):
        kind = "one diffusers/transformers component's weights; pass the whole diffusers model directory instead"
    else:
        kind = f"not a Stable Diffusion 1.x/2.x/SDXL checkpoint (e.g. key {min(keys)!r})"
    return f"the file is {kind}: no UNet weights (model.diffusion_model.*) found"


def _prediction_from_metadata(metadata: Mapping[str, str], keys) -> bool | None:
    """sd-scripts / SAI model-spec metadata, or the `v_pred` marker key some v-prediction SDXL models carry."""
    prediction = str(metadata.get("modelspec.prediction_type", "")).strip().lower()
    if prediction in ("v", "v_prediction", "v-prediction"):
        return True
    if prediction in ("epsilon", "eps"):
        return False
    architecture = str(metadata.get("modelspec.architecture", "")).strip().lower()
    if architecture.startswith("stable-diffusion-v2"):
        return architecture.endswith("-v")  # "stable-diffusion-v2-768-v" vs "stable-diffusion-v2-512"
    if "v_pred" in keys:
        return True
    return None


def detect_diffusers_dir(path: str | Path) -> Detection:
    """Family from a diffusers directory's component configs; prediction type from its scheduler config."""
    path = Path(path)
    index = _read_json(path / "model_index.json") or {}
    unet = _read_json(path / "unet" / "config.json") or {}
    text_encoder = _read_json(path / "text_encoder" / "config.json") or {}
    scheduler = _read_json(path / "scheduler" / "scheduler_config.json") or {}
    prediction = scheduler.get("prediction_type")
    v = None if prediction is None else prediction == "v_prediction"
    if "text_encoder_2" in index or (path / "text_encoder_2").is_dir():
        return Detection("sdxl", v, "a second text encoder (text_encoder_2)")
    act = text_encoder.get("hidden_act")
    if act == "gelu":
        return Detection("sd2", v, "an OpenCLIP text encoder (hidden_act gelu)")
    if act == "quick_gelu":
        return Detection("sd1", v, "an OpenAI CLIP text encoder (hidden_act quick_gelu)")
    dim = unet.get("cross_attention_dim")
    if dim in _CROSS_ATTENTION_DIMS:
        return Detection(_CROSS_ATTENTION_DIMS[dim], v, f"UNet cross-attention width {dim}")
    return Detection(None, v, "no text encoder config and no standard UNet cross-attention width")


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON config ({err})") from err


def resolve(detection: Detection, source: str, *, v2: bool | None, sdxl: bool | None,
            v_parameterization: bool | None, single_file: bool) -> tuple[str, bool]:
    """The family and v-parameterization to load, from what was detected and the user's flags.

    v2=True / sdxl=True require that family (and choose it when the files cannot tell); sdxl=False says the
    caller cannot use SDXL (the SD 1.x/2.x scripts); v2=False is "not given", as sd-scripts' flag is.
    v_parameterization True/False always wins; None takes what the files say, else epsilon.
    """
    if v2 and sdxl:
        raise UserError("--v2 and --sdxl cannot both be given: --v2 is for SD 2.x models, --sdxl for SDXL")
    family = detection.family
    wanted = "sdxl" if sdxl else "sd2" if v2 else None
    flag = "--sdxl" if sdxl else "--v2"
    if family is None:
        if wanted is None:
            raise UserError(f"{source}: cannot tell whether this is an SD 1.x, SD 2.x or SDXL model "
                            f"({detection.reason}); pass --v2 for SD 2.x or use the SDXL script for SDXL")
        family = wanted
    elif wanted is not None and wanted != family:
        raise UserError(f"{source}: {flag} was given but this is an {FAMILY_NAMES[family]} model "
                        f"(detected from {detection.reason}); remove {flag} or pass an {FAMILY_NAMES[wanted]} model")
    if sdxl is False and family == "sdxl":
        raise UserError(f"{source}: this is an SDXL model (detected from {detection.reason}); "
                        "use the SDXL script (sdxl_train_textual_inversion.py) for it")

    if v_parameterization is not None:
        v = bool(v_parameterization)
        if detection.v_parameterization is not None and detection.v_parameterization != v:
            logger.warning("%s says %s prediction, but --v_parameterization is %s; using %s as given",
                           source, "v" if detection.v_parameterization else "epsilon", v, "v" if v else "epsilon")
    elif detection.v_parameterization is not None:
        v = detection.v_parameterization
    else:
        v = False
        if family == "sd2" and single_file:
            logger.warning("%s: an SD 2.x checkpoint does not say whether it predicts v (768-v models) or noise "
                           "(512-base models); assuming noise (epsilon). Pass --v_parameterization for 768-v models.",
                           source)
    if v and family == "sd1":
        logger.warning("v-parameterization with an SD 1.x model is unusual; check --v_parameterization")
    return family, v
