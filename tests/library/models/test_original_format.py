"""Specification of the diffusers -> original single-file layout: exact inverse of diffusers' converter."""

import json

import pytest
import torch
from accelerate import init_empty_weights
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

from library.models.checkpoint_files import read_checkpoint
from library.models.loading import bundled_config_dir
from library.models.original_format import EMBEDDED_CONFIG_KEY, save_single_file, to_original_state_dict
from library.models.tiny import build_tiny_components


def _assert_same(reference: dict, converted: dict):
    assert set(converted) == set(reference)
    for key, value in reference.items():
        assert torch.equal(converted[key], value), key


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_diffusers_converter_inverts_it_exactly(family):
    parts = build_tiny_components(family)
    original = to_original_state_dict(parts)
    _assert_same(parts["unet"].state_dict(), convert_ldm_unet_checkpoint(original, dict(parts["unet"].config)))
    _assert_same(parts["vae"].state_dict(), convert_ldm_vae_checkpoint(original, dict(parts["vae"].config)))


def _full_size(name):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    root = bundled_config_dir(*name)
    with init_empty_weights():  # meta tensors: the layout without the memory
        parts = dict(
            unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(root / "unet"))),
            vae=AutoencoderKL.from_config(AutoencoderKL.load_config(str(root / "vae"))),
            text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(str(root / "text_encoder"))),
        )
        if name[0] == "sdxl":
            parts["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(root / "text_encoder_2")))
    return to_original_state_dict(parts)


@pytest.mark.parametrize(
    "name, count, expected_shapes",
    [
        (("sd1", False), 1131, {  # v1-5-pruned-emaonly.safetensors holds these 1131 tensors
            "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
            "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
            "model.diffusion_model.output_blocks.8.2.conv.weight": (640, 640, 3, 3),
            "model.diffusion_model.middle_block.1.proj_in.weight": (1280, 1280, 1, 1),
            "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
            "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
            "cond_stage_model.transformer.text_model.embeddings.position_ids": (1, 77),
        }),
        (("sd2", True), 1228, {
            "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
            "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight": (3072, 1024),
            "cond_stage_model.model.text_projection": (1024, 1024),
            "cond_stage_model.model.positional_embedding": (77, 1024),
        }),
        (("sdxl", False), 2515, {  # sd_xl_base_1.0.safetensors holds these 2515 tensors
            "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
            "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn1.to_q.weight": (1280, 1280),
            "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
            "model.diffusion_model.output_blocks.5.2.conv.weight": (640, 640, 3, 3),
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (768,),
            "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
            "conditioner.embedders.1.model.text_projection": (1280, 1280),
            "conditioner.embedders.1.model.logit_scale": (),
        }),
    ],
)
def test_full_size_layouts_match_real_checkpoints(name, count, expected_shapes):
    original = _full_size(name)
    assert len(original) == count
    for key, shape in expected_shapes.items():
        assert tuple(original[key].shape) == shape, key


def test_saved_files_carry_metadata_and_configs(tmp_path):
    parts = build_tiny_components("sd2")
    path = save_single_file(parts, tmp_path / "m.safetensors", prediction_type="v_prediction", embed_config=True)
    checkpoint = read_checkpoint(path)
    assert checkpoint.metadata["modelspec.prediction_type"] == "v"
    configs = json.loads(checkpoint.metadata[EMBEDDED_CONFIG_KEY])
    assert configs["unet"]["cross_attention_dim"] == 48 and configs["text_encoder"]["hidden_act"] == "gelu"
    # .ckpt: the LDM/Lightning wrapper {"state_dict": ...}
    ckpt = save_single_file(parts, tmp_path / "m.ckpt", dtype=torch.float16)
    raw = torch.load(ckpt, weights_only=True)
    assert set(raw) == {"state_dict"}
    assert raw["state_dict"]["model.diffusion_model.out.2.weight"].dtype == torch.float16
    assert set(read_checkpoint(ckpt).state_dict) == set(checkpoint.state_dict)
