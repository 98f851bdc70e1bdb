"""The diffusers Textual Inversion guide's command trains on a flat image folder, and its outputs load in diffusers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from library.errors import UserError
from train_textual_inversion import main as train_main

# the guide's command (diffusers docs, training/text_inversion), with a local model, a tiny size and few steps
GUIDE_FLAGS = [
    "--learnable_property=object", "--placeholder_token=<cat-toy>", "--initializer_token=toy", "--train_batch_size=1",
    "--gradient_accumulation_steps=1", "--learning_rate=5.0e-04", "--scale_lr", "--lr_scheduler=constant", "--lr_warmup_steps=0",
]  # fmt: skip


def flat_folder(root, n=3, captions: dict[str, str] | None = None):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / f"{i:02d}-cat toy.png")
    for name, text in (captions or {}).items():
        (root / name).write_text(text)
    return root


def run(tiny, tmp_path, *extra, steps=2):
    out = tmp_path / "textual_inversion_cat"
    train_main([f"--pretrained_model_name_or_path={tiny}", f"--train_data_dir={flat_folder(tmp_path / 'cat_toy')}", *GUIDE_FLAGS,
                "--resolution=64", f"--max_train_steps={steps}", f"--output_dir={out}", "--seed=1", *extra])
    return out


@pytest.mark.training
def test_guide_command_writes_learned_embeds_that_diffusers_loads(tiny_model_dir, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    tiny = tiny_model_dir("sd1")
    out = run(tiny, tmp_path, "--save_steps=1", "--num_vectors=2")
    assert sorted(p.name for p in out.glob("learned_embeds*")) == [
        "learned_embeds-steps-1.safetensors", "learned_embeds-steps-2.safetensors", "learned_embeds.safetensors"]
    saved = load_file(str(out / "learned_embeds.safetensors"))
    assert list(saved) == ["<cat-toy>"] and saved["<cat-toy>"].shape[0] == 2
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny), safety_checker=None, requires_safety_checker=False)
    pipe.load_textual_inversion(str(out))  # diffusers' own loader, from the output folder as the guide shows
    prompt = pipe.maybe_convert_prompt("a <cat-toy>", pipe.tokenizer)  # diffusers expands a multi-vector token
    ids = pipe.tokenizer(prompt).input_ids
    assert pipe.tokenizer.convert_tokens_to_ids(["<cat-toy>", "<cat-toy>_1"]) == ids[2:4]
    rows = pipe.text_encoder.get_input_embeddings().weight[ids[2:4]]
    assert torch.equal(rows.detach(), saved["<cat-toy>"].to(rows.dtype))


@pytest.mark.training
@pytest.mark.slow
def test_save_as_full_pipeline_writes_a_pipeline_that_loads_and_generates_with_the_token(tiny_model_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    out = run(tiny_model_dir("sd1"), tmp_path, "--save_as_full_pipeline", "--no_safe_serialization")
    assert (out / "learned_embeds.bin").is_file() and (out / "model_index.json").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(str(out), safety_checker=None, requires_safety_checker=False)
    token_id = pipe.tokenizer.convert_tokens_to_ids("<cat-toy>")
    assert token_id == len(pipe.tokenizer) - 1 and token_id != pipe.tokenizer.unk_token_id
    learned = torch.load(out / "learned_embeds.bin", weights_only=True)["<cat-toy>"]
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[token_id].detach(), learned[0])
    image = pipe("a photo of <cat-toy>", num_inference_steps=2, height=64, width=64, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()


@pytest.mark.training
def test_checkpointing_steps_and_resume_latest(tiny_model_dir, tmp_path):
    tiny = tiny_model_dir("sd1")
    out = run(tiny, tmp_path, "--checkpointing_steps=1", "--checkpoints_total_limit=2", steps=3)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    train_main([f"--pretrained_model_name_or_path={tiny}", f"--train_data_dir={tmp_path / 'cat_toy'}", *GUIDE_FLAGS,
                "--resolution=64", "--max_train_steps=4", f"--output_dir={out}", "--seed=1", "--resume_from_checkpoint=latest",
                "--save_steps=1"])
    # it continued from checkpoint-3: only step 4 was trained
    assert sorted(p.name for p in out.glob("learned_embeds-steps-*")) == ["learned_embeds-steps-4.safetensors"]


@pytest.mark.parametrize("layout", ["empty", "mixed"])
def test_flat_folder_problems_are_one_line_errors(tiny_model_dir, tmp_path, layout):
    data = tmp_path / "data"
    data.mkdir()
    if layout == "mixed":
        flat_folder(data, 1)
        flat_folder(data / "10_cat", 1)
    with pytest.raises(UserError) as err:
        train_main([f"--pretrained_model_name_or_path={tiny_model_dir('sd1')}", f"--train_data_dir={data}", *GUIDE_FLAGS,
                    "--resolution=64", "--max_train_steps=1", f"--output_dir={tmp_path / 'out'}"])
    message = str(err.value)
    assert "\n" not in message and str(data) in message
    assert ("has no images" if layout == "empty" else "mixes 1 N_name subfolder(s)") in message


@pytest.mark.training
@pytest.mark.slow
def test_sdxl_example_flags_write_the_pair_that_diffusers_loads_and_a_full_pipeline(tiny_model_dir, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import load_file

    from sdxl_train_textual_inversion import main as sdxl_main

    tiny, out = tiny_model_dir("sdxl"), tmp_path / "out"
    sdxl_main([f"--pretrained_model_name_or_path={tiny}", f"--train_data_dir={flat_folder(tmp_path / 'cat_toy', 2)}", *GUIDE_FLAGS,
               "--resolution=64", "--max_train_steps=1", f"--output_dir={out}", "--seed=1", "--save_as_full_pipeline"])
    first, second = load_file(str(out / "learned_embeds.safetensors")), load_file(str(out / "learned_embeds_2.safetensors"))
    assert list(first) == list(second) == ["<cat-toy>"]
    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny))
    # the SDXL example's README: each file into its own text encoder
    pipe.load_textual_inversion(first["<cat-toy>"], token="<cat-toy>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(second["<cat-toy>"], token="<cat-toy>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    full = StableDiffusionXLPipeline.from_pretrained(str(out))
    for tokenizer, encoder, vectors in ((full.tokenizer, full.text_encoder, first), (full.tokenizer_2, full.text_encoder_2, second)):
        token_id = tokenizer.convert_tokens_to_ids("<cat-toy>")
        assert torch.equal(encoder.get_input_embeddings().weight[token_id].detach(), vectors["<cat-toy>"][0])
