"""Specification of the shipped toy model: size, plain diffusers loading in fp32, a 64x64 image, SD1 detection."""

import json

import numpy as np
import torch

from library.tokenizers import load_bundled_tokenizer
from library.toyworld.demo_data import CROSS, STAR
from library.toyworld.model import TOY_MODEL_DIR, held_out_pairs, load_toy_pipeline
from library.toyworld.world import HELD_OUT

MAX_BYTES = 30 * 1024 * 1024


def test_model_is_shipped_and_small():
    files = [p for p in TOY_MODEL_DIR.rglob("*") if p.is_file()]
    assert (TOY_MODEL_DIR / "model_index.json").is_file()
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    assert json.loads((TOY_MODEL_DIR / "train_info.json").read_text())["held_out"] == list(HELD_OUT)


def test_both_demo_concepts_are_pairs_the_shipped_model_never_saw():
    assert held_out_pairs() == [STAR.concept, CROSS.concept] and STAR.concept == HELD_OUT


def test_a_model_folder_without_a_training_record_held_out_the_purple_star_alone(tmp_path):
    assert held_out_pairs(tmp_path) == [HELD_OUT]


def test_plain_diffusers_load_is_fp32_and_generates_a_64px_image():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(TOY_MODEL_DIR))  # no dtype: fp16 files, fp32 models
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.float32}
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red star on a white background", height=64, width=64, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="np").images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()


def test_vae_downsamples_by_4_to_sd1_latents():
    pipe = load_toy_pipeline()
    assert pipe.vae_scale_factor == 4
    with torch.no_grad():
        latents = pipe.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode()
    assert latents.shape == (1, 4, 16, 16)


def test_shipped_tokenizer_is_the_bundled_sd1_tokenizer():
    pipe = load_toy_pipeline()
    text = "a purple star on a white background"
    assert pipe.tokenizer(text).input_ids == load_bundled_tokenizer("sd1")(text).input_ids
    assert pipe.text_encoder.get_input_embeddings().num_embeddings == 49408


def test_project_loader_reads_it_as_sd1():
    from library.models.loading import load_models

    models = load_models(str(TOY_MODEL_DIR))
    assert models.family == "sd1" and not models.v_parameterization
    assert models.unet.dtype == torch.float32
