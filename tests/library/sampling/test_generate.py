"""Specification of image planning (counts, seeds, batches) and rendering with tiny SD1, SD2-v and SDXL models."""

import numpy as np
import pytest
import torch
from PIL import Image

from library.models.tiny import build_tiny_components
from library.sampling.generate import (
    GenerationDefaults,
    ImageRenderer,
    SeedSource,
    batches,
    generate_images,
    plan_images,
    sampling_model_from_components,
)
from library.sampling.prompt_options import PromptSpec, parse_prompt_line
from library.token_embedding import install_vectors
from library.tokens import add_new_tokens

SMALL = GenerationDefaults(width=64, height=64, steps=2)


@pytest.fixture(scope="module")
def models():
    return {family: sampling_model_from_components(family, build_tiny_components(family)) for family in ("sd1", "sd2", "sdxl")}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


# ---- planning -------------------------------------------------------------------------------------------------

def test_plan_counts_and_order_follow_sd_scripts():
    specs = [PromptSpec("a"), PromptSpec("b")]
    jobs = plan_images(specs, SMALL, images_per_prompt=2, n_iter=2, seeds=SeedSource(1))
    assert [j.prompt for j in jobs] == ["a", "a", "b", "b"] * 2
    assert [j.index for j in jobs] == list(range(8))
    assert [j.prompt_index for j in jobs] == [0, 0, 1, 1] * 2


def test_seed_of_a_single_image_is_used_as_is():
    (job,) = plan_images([PromptSpec("a")], SMALL, seeds=SeedSource(1234, single_image=True))
    assert job.seed == 1234 and job.seed_given


def test_seed_draws_a_reproducible_sequence_otherwise():
    specs = [PromptSpec("a"), PromptSpec("b")]
    first = [j.seed for j in plan_images(specs, SMALL, images_per_prompt=2, seeds=SeedSource(7))]
    again = [j.seed for j in plan_images(specs, SMALL, images_per_prompt=2, seeds=SeedSource(7))]
    assert first == again and len(set(first)) == 4 and 7 not in first
    unseeded = plan_images(specs, SMALL, seeds=SeedSource(None))
    assert not any(j.seed_given for j in unseeded)


def test_prompt_seeds_are_used_in_turn_and_the_last_repeats():
    spec = parse_prompt_line("a --d 5,6")
    assert [j.seed for j in plan_images([spec], SMALL, images_per_prompt=4)] == [5, 6, 6, 6]
    assert all(j.seed_given for j in plan_images([spec], SMALL))


def test_iter_same_seed_shares_one_seed_per_iteration():
    specs = [PromptSpec("a"), PromptSpec("b"), parse_prompt_line("c --d 3")]
    jobs = plan_images(specs, SMALL, n_iter=2, seeds=SeedSource(1, iter_same_seed=True))
    seeds = [j.seed for j in jobs]
    assert seeds[0] == seeds[1] and seeds[2] == 3 and seeds[3] == seeds[4] and seeds[0] != seeds[3]


def test_defaults_fill_unset_options_and_sizes_round_down_to_8():
    spec = parse_prompt_line("a --w 100 --ss k_euler")
    (job,) = plan_images([spec], GenerationDefaults(height=70, steps=9, scale=4.0, negative_prompt="ugly"))
    assert (job.width, job.height, job.steps, job.scale, job.sampler, job.negative_prompt) == (96, 64, 9, 4.0, "euler", "ugly")
    assert job.original_size == (64, 96) and job.crop_top_left == (0, 0)


def test_batches_hold_consecutive_jobs_with_the_same_settings():
    specs = [PromptSpec("a"), PromptSpec("b"), PromptSpec("c", width=128), PromptSpec("d"), PromptSpec("e")]
    jobs = plan_images(specs, SMALL)
    assert [[j.prompt for j in b] for b in batches(jobs, 2)] == [["a", "b"], ["c"], ["d", "e"]]


# ---- rendering ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_the_same_seed_gives_the_same_image(models, family):
    spec = parse_prompt_line("a photo of a cat --n blurry --d 11")
    (a, job), = generate_images(models[family], [spec], defaults=SMALL)
    (b, _), = generate_images(models[family], [spec], defaults=SMALL)
    (c, _), = generate_images(models[family], [parse_prompt_line("a photo of a cat --n blurry --d 12")], defaults=SMALL)
    assert a.size == (64, 64) and job.seed == 11
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_a_batch_gives_each_image_its_own_seed(models):
    spec = parse_prompt_line("a cat --d 1,2")
    batched = generate_images(models["sd1"], [spec], defaults=SMALL, images_per_prompt=2, batch_size=2)
    assert [job.seed for _, job in batched] == [1, 2]
    assert not np.array_equal(pixels(batched[0][0]), pixels(batched[1][0]))
    (alone, _), = generate_images(models["sd1"], [parse_prompt_line("a cat --d 2")], defaults=SMALL)
    assert np.abs(pixels(alone) - pixels(batched[1][0])).max() <= 2  # same seed, same image (up to float noise)


def test_an_embedding_changes_images_of_prompts_that_use_it_only():
    model = sampling_model_from_components("sd1", build_tiny_components("sd1"))
    specs = [parse_prompt_line("a photo of a cat --d 3"), parse_prompt_line("a photo of (mychar4:1.2) --d 3")]
    before = [pixels(img) for img, _ in generate_images(model, specs, defaults=SMALL)]
    add_new_tokens(model.tokenizers[0], ["mychar4"])
    torch.manual_seed(0)
    install_vectors(model.text_encoders[0], torch.randn(1, 32) * 3, trainable=False)
    after = [pixels(img) for img, _ in generate_images(model, specs, defaults=SMALL)]
    assert np.array_equal(before[0], after[0])
    assert not np.array_equal(before[1], after[1])


def test_long_weighted_prompts_render(models):
    long_prompt = ", ".join(["(a red cat:1.3)", "[blue sky]"] * 25) + " --n " + ", ".join(["blurry"] * 90) + " --d 4"
    renderer = ImageRenderer(models["sdxl"])
    ((job, image),) = list(renderer.render(plan_images([parse_prompt_line(long_prompt)], SMALL)))
    assert image.size == (64, 64) and renderer.encoder.truncated == []


def test_negative_scale_changes_the_image(models):
    plain = parse_prompt_line("a cat --n a dog --d 5 --l 5")
    (a, _), = generate_images(models["sd1"], [plain], defaults=SMALL)
    (b, job), = generate_images(models["sd1"], [parse_prompt_line("a cat --n a dog --d 5 --l 5 --nl 3")], defaults=SMALL)
    assert job.negative_scale == 3.0 and not np.array_equal(pixels(a), pixels(b))
    (c, _), = generate_images(models["sdxl"], [parse_prompt_line("a cat --n a dog --d 5 --l 5 --nl 3")], defaults=SMALL)
    assert c.size == (64, 64)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_img2img_and_inpainting_with_a_full_precision_vae_beside_a_bf16_unet(family):
    parts = build_tiny_components(family)
    model = sampling_model_from_components(family, parts)
    model.unet.to(torch.bfloat16)
    for encoder in model.text_encoders:
        encoder.to(torch.bfloat16)
    init = Image.new("RGB", (80, 64), (200, 40, 40))
    mask = Image.new("L", (80, 64), 0)
    mask.paste(255, (0, 0, 40, 64))
    defaults = GenerationDefaults(width=80, height=64, steps=4, strength=0.5)
    jobs = plan_images([parse_prompt_line("a cat --d 1"), parse_prompt_line("a cat --d 2")], defaults)
    img2img = [image for _, image in ImageRenderer(model, init_images=[init]).render(jobs)]
    inpainted = [pixels(image) for _, image in ImageRenderer(model, init_images=[init], mask_images=[mask]).render(jobs)]
    assert img2img[0].size == (80, 64) and inpainted[0].shape == (64, 80, 3)
    assert next(model.vae.parameters()).dtype == torch.float32  # the VAE stayed in fp32
    # inpainting repaints the masked (left) half only: other seeds change it, the right half stays the source's
    left_change = np.abs(inpainted[0][:, :32] - inpainted[1][:, :32]).mean()
    right_change = np.abs(inpainted[0][:, 48:] - inpainted[1][:, 48:]).mean()
    assert right_change < 0.25 * left_change


def test_sdxl_size_conditioning_is_passed(models):
    base = parse_prompt_line("a cat --d 9")
    conditioned = parse_prompt_line("a cat --d 9 --ow 2048 --oh 2048 --ct 256 --cl 256")
    (a, _), = generate_images(models["sdxl"], [base], defaults=SMALL)
    (b, job), = generate_images(models["sdxl"], [conditioned], defaults=SMALL)
    assert job.original_size == (2048, 2048) and job.crop_top_left == (256, 256)
    assert not np.array_equal(pixels(a), pixels(b))
