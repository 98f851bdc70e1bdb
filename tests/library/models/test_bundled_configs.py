"""The shipped diffusers configs build the real SD1.5 / SD2.x / SDXL architectures, and a full-size file loads."""

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from model_helpers import random_components
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from library.models.loading import BUNDLED_CONFIGS, bundled_config_dir, load_models
from library.models.original_format import save_single_file

# parameter counts of the published models (UNet, VAE, text encoder; SDXL also text encoder 2)
REAL_SIZES = {
    "sd15": (859_520_964, 83_653_863, 123_060_480),
    "sd2-512": (865_910_724, 83_653_863, 340_387_840),  # OpenCLIP-H without its unused last layer
    "sd2-768-v": (865_910_724, 83_653_863, 340_387_840),
    "sdxl-base": (2_567_463_684, 83_653_863, 123_060_480, 694_659_840),
}


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(REAL_SIZES))
def test_bundled_configs_build_the_real_architectures(name):
    root = BUNDLED_CONFIGS / name
    with init_empty_weights():
        sizes = [
            _count(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(root / "unet")))),
            _count(AutoencoderKL.from_config(AutoencoderKL.load_config(str(root / "vae")))),
            _count(CLIPTextModel(CLIPTextConfig.from_pretrained(str(root / "text_encoder")))),
        ]
        if (root / "text_encoder_2").is_dir():
            sizes.append(_count(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(root / "text_encoder_2")))))
    assert tuple(sizes) == REAL_SIZES[name]
    prediction = DDPMScheduler.load_config(str(root / "scheduler"))["prediction_type"]
    assert prediction == ("v_prediction" if name == "sd2-768-v" else "epsilon")
    assert CLIPTextConfig.from_pretrained(str(root / "text_encoder")).eos_token_id == 49407


@pytest.mark.parametrize("family, v, name", [("sd1", False, "sd15"), ("sd1", True, "sd15"), ("sd2", False, "sd2-512"),
                                             ("sd2", True, "sd2-768-v"), ("sdxl", False, "sdxl-base")])
def test_bundled_config_choice(family, v, name):
    assert bundled_config_dir(family, v).name == name


@pytest.mark.slow
def test_full_size_sd15_single_file_loads_through_the_bundled_config(tmp_path):
    """A file laid out like v1-5-pruned-emaonly.safetensors (random fp16 weights, no embedded config)."""
    parts = random_components(bundled_config_dir("sd1", False), torch.float16)
    probe = parts["unet"].mid_block.attentions[0].proj_in.weight.clone()
    path = save_single_file(parts, tmp_path / "sd15.safetensors")
    del parts
    models = load_models(str(path), dtype=torch.float16)
    assert (models.family, models.v_parameterization) == ("sd1", False)
    assert tuple(_count(m) for m in (models.unet, models.vae, models.text_encoders[0])) == REAL_SIZES["sd15"]
    assert models.unet.dtype == torch.float16
    assert torch.equal(models.unet.mid_block.attentions[0].proj_in.weight, probe)
    assert models.tokenizers[0]("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
