"""Diffusers-layout models to the original (LDM / A1111 / Civitai) single-file layout.

`to_original_state_dict` gives the state dict a real SD1.x, SD2.x or SDXL `.safetensors` checkpoint holds:
`model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE) and the text encoders under
`cond_stage_model.transformer.*` (CLIP-L), `cond_stage_model.model.*` (OpenCLIP, SD2) or
`conditioner.embedders.{0,1}.*` (SDXL). It is the inverse of diffusers' single-file converter
(`diffusers/loaders/single_file_utils.py`), written for any block count so tiny test models work too;
tests check the round trip through diffusers exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from library.atomic import atomic_path

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TE_PREFIX = "cond_stage_model.transformer."
SD2_TE_PREFIX = "cond_stage_model.model."
SDXL_TE1_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TE2_PREFIX = "conditioner.embedders.1.model."

# safetensors metadata key under which `save_single_file(..., embed_config=True)` stores the diffusers configs
EMBEDDED_CONFIG_KEY = "ti_suite.diffusers_configs"

_RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
           ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."), ("conv_shortcut.", "skip_connection.")]
_VAE_ATTENTION = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]
_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature; the value is unused by Stable Diffusion


def _unet_prefix_map(config) -> dict[str, str]:
    """diffusers module prefix -> LDM module prefix, for this UNet's block layout."""
    n_blocks = len(config["block_out_channels"])
    per_block = config["layers_per_block"]
    down_attn = ["CrossAttn" in t for t in config["down_block_types"]]
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    m = {
        "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
        "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
        "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
        "mid_block.resnets.0.": "middle_block.0.", "mid_block.attentions.0.": "middle_block.1.",
        "mid_block.resnets.1.": "middle_block.2.",
    }
    for i in range(n_blocks):
        for j in range(per_block):
            index = i * (per_block + 1) + j + 1
            m[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{index}.0."
            if down_attn[i]:
                m[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{index}.1."
        if i < n_blocks - 1:
            m[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(i + 1) * (per_block + 1)}.0.op."
        for j in range(per_block + 1):
            index = i * (per_block + 1) + j
            m[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{index}.0."
            if up_attn[i]:
                m[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{index}.1."
        if i < n_blocks - 1:
            # the upsampler follows the last resnet (and its attention, if the block has one)
            m[f"up_blocks.{i}.upsamplers.0.conv."] = f"output_blocks.{i * (per_block + 1) + per_block}.{2 if up_attn[i] else 1}.conv."
    return m


def _rename(key: str, prefix_map: dict[str, str]) -> str:
    """Replace the longest matching module prefix of `key`."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut]) + "."
        if prefix in prefix_map:
            return prefix_map[prefix] + key[len(prefix):]
    raise KeyError(f"no original-format name for {key!r}")


def unet_to_original(state_dict: dict, config) -> dict:
    """UNet2DConditionModel weights -> LDM UNet keys (without the `model.diffusion_model.` prefix)."""
    prefix_map = {}
    for hf, ldm in _unet_prefix_map(config).items():
        prefix_map[hf] = ldm
        if ".resnets." in hf:  # resnet sub-layers are the only modules named differently inside a block
            prefix_map.update({hf + a: ldm + b for a, b in _RESNET})
    return {_rename(key, prefix_map): value for key, value in state_dict.items()}


def vae_to_original(state_dict: dict, config) -> dict:
    """AutoencoderKL weights -> LDM VAE keys (without the `first_stage_model.` prefix)."""
    n_blocks = len(config["block_out_channels"])
    m = {"encoder.conv_norm_out.": "encoder.norm_out.", "decoder.conv_norm_out.": "decoder.norm_out."}
    for i in range(n_blocks):
        m[f"encoder.down_blocks.{i}.resnets."] = f"encoder.down.{i}.block."
        m[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        # the decoder's up blocks are numbered from the lowest resolution in diffusers, the highest in LDM
        m[f"decoder.up_blocks.{i}.resnets."] = f"decoder.up.{n_blocks - 1 - i}.block."
        m[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{n_blocks - 1 - i}.upsample."
    for part in ("encoder", "decoder"):
        m[f"{part}.mid_block.resnets.0."] = f"{part}.mid.block_1."
        m[f"{part}.mid_block.resnets.1."] = f"{part}.mid.block_2."
        m[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
    out = {}
    for key, value in state_dict.items():
        try:
            new = _rename(key, m)
        except KeyError:
            new = key  # conv_in, conv_out, quant_conv, post_quant_conv keep their names
        new = new.replace(".conv_shortcut.", ".nin_shortcut.")
        if ".mid.attn_1." in new:
            for src, dst in _VAE_ATTENTION:
                new = new.replace(f".attn_1.{src}", f".attn_1.{dst}")
            if value.ndim == 2:
                value = value[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out[new] = value
    return out


def _text_model_keys(state_dict: dict) -> dict:
    # transformers >= 5.6 flattened CLIPTextModel (no `text_model.` level); accept both layouts
    return {k.removeprefix("text_model."): v for k, v in state_dict.items()}


def clip_to_original(state_dict: dict) -> dict:
    """CLIPTextModel weights -> the HF-CLIP layout SD1 and SDXL (encoder 1) files use: `text_model.*`."""
    out = {f"text_model.{k}": v for k, v in _text_model_keys(state_dict).items()}
    max_pos = out["text_model.embeddings.position_embedding.weight"].shape[0]
    out["text_model.embeddings.position_ids"] = torch.arange(max_pos).unsqueeze(0)  # present in real files
    return out


def open_clip_to_original(state_dict: dict, *, add_unused_last_layer: bool) -> dict:
    """CLIPTextModel(WithProjection) weights -> OpenCLIP layout (`transformer.resblocks.*`, `ln_final`, ...).

    SD2 files hold one more layer than SD2 uses (diffusers drops it) and an unused projection:
    `add_unused_last_layer` writes a copy of the last layer and an identity projection, as sd-scripts does.
    """
    sd = _text_model_keys(state_dict)
    out = {
        "token_embedding.weight": sd["embeddings.token_embedding.weight"],
        "positional_embedding": sd["embeddings.position_embedding.weight"],
        "ln_final.weight": sd["final_layer_norm.weight"],
        "ln_final.bias": sd["final_layer_norm.bias"],
    }
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for a, b in names.items():
            for p in ("weight", "bias"):
                out[f"{dst}{b}.{p}"] = sd[f"{src}{a}.{p}"]
        for p in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{p}"] = torch.cat([sd[f"{src}self_attn.{q}_proj.{p}"] for q in "qkv"])
    hidden = out["ln_final.weight"].shape[0]
    if "text_projection.weight" in sd:
        out["text_projection"] = sd["text_projection.weight"].T.contiguous()
    elif add_unused_last_layer:
        out["text_projection"] = torch.eye(hidden, dtype=out["ln_final.weight"].dtype)
    if add_unused_last_layer:
        last, extra = f"transformer.resblocks.{layers[-1]}.", f"transformer.resblocks.{layers[-1] + 1}."
        out.update({extra + k[len(last):]: v.clone() for k, v in list(out.items()) if k.startswith(last)})
    out["logit_scale"] = torch.tensor(_LOGIT_SCALE, dtype=out["ln_final.weight"].dtype)
    return out


def infer_family(components: dict) -> str:
    """"sdxl" if there is a second text encoder, "sd2" for an OpenCLIP (gelu) encoder, else "sd1"."""
    if components.get("text_encoder_2") is not None:
        return "sdxl"
    return "sd2" if components["text_encoder"].config.hidden_act == "gelu" else "sd1"


def to_original_state_dict(components: dict, family: str | None = None) -> dict[str, torch.Tensor]:
    """The single-file state dict of a model given as diffusers components (`unet`, `vae`, `text_encoder`, ...)."""
    family = family or infer_family(components)
    unet, vae = components["unet"], components["vae"]
    out = {UNET_PREFIX + k: v for k, v in unet_to_original(unet.state_dict(), unet.config).items()}
    out.update({VAE_PREFIX + k: v for k, v in vae_to_original(vae.state_dict(), vae.config).items()})
    te = components["text_encoder"].state_dict()
    if family == "sd1":
        out.update({SD1_TE_PREFIX + k: v for k, v in clip_to_original(te).items()})
    elif family == "sd2":
        out.update({SD2_TE_PREFIX + k: v for k, v in open_clip_to_original(te, add_unused_last_layer=True).items()})
    elif family == "sdxl":
        te2 = components["text_encoder_2"].state_dict()
        out.update({SDXL_TE1_PREFIX + k: v for k, v in clip_to_original(te).items()})
        out.update({SDXL_TE2_PREFIX + k: v for k, v in open_clip_to_original(te2, add_unused_last_layer=False).items()})
    else:
        raise ValueError(f"unknown family {family!r}")
    return out


def component_configs(components: dict) -> dict:
    """The diffusers/transformers configs of the components, as plain JSON-able dicts."""
    configs = {}
    for name in ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler"):
        part = components.get(name)
        if part is None:
            continue
        config = part.config.to_dict() if hasattr(part.config, "to_dict") else dict(part.config)
        configs[name] = json.loads(json.dumps(config, default=str))
    return configs


def save_single_file(components: dict, path: str | Path, *, family: str | None = None,
                     prediction_type: str | None = None, embed_config: bool = False,
                     dtype: torch.dtype | None = None) -> Path:
    """Write the model as one `.safetensors` (or `.ckpt`, wrapped in "state_dict") original-format file.

    prediction_type ("epsilon" | "v_prediction") is recorded as `modelspec.prediction_type`, as sd-scripts does.
    embed_config stores the components' configs in the file so a non-standard (e.g. tiny) architecture loads
    without a config directory; real checkpoints do not have it and load with the bundled configs.
    """
    path = Path(path)
    state_dict = to_original_state_dict(components, family)
    state_dict = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous()
                  for k, v in state_dict.items()}
    metadata = {}
    if prediction_type is not None:
        metadata["modelspec.prediction_type"] = "v" if prediction_type == "v_prediction" else prediction_type
    if embed_config:
        metadata[EMBEDDED_CONFIG_KEY] = json.dumps(component_configs(components))
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state_dict, str(tmp), metadata=metadata or None)
        else:
            torch.save({"state_dict": state_dict, **metadata}, tmp)
    return path
