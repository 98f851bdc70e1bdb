"""Deep Shrink hooks, Gradual Latent growth, starting noise and weight normalisation, as units."""

import random

import torch

from library.models.tiny import build_tiny_components
from library.sampling.deep_shrink import DeepShrink, deep_shrink, input_blocks
from library.sampling.gradual_latent import GradualLatent, scheduler_class
from library.sampling.noise import NoiseSettings, image_noise, starting_noise
from library.sampling.prompt_weighting import apply_weights


def test_deep_shrink_counts_input_blocks_and_acts_only_above_its_timestep():
    unet = build_tiny_components("sd1")["unet"]
    assert len(input_blocks(unet)) == 4  # conv_in, resnet, downsampler, resnet (SD 1.5 full size: 12)
    x, states = torch.randn(1, 4, 16, 16), torch.randn(1, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        plain_early, plain_late = unet(x, 900, states).sample, unet(x, 100, states).sample
        with deep_shrink(unet, DeepShrink(depth_1=1, timesteps_1=650)):
            early, late = unet(x, 900, states).sample, unet(x, 100, states).sample
        after = unet(x, 900, states).sample
    assert early.shape == x.shape and not torch.allclose(early, plain_early)
    assert torch.equal(late, plain_late) and torch.equal(after, plain_early)  # inactive below 650; hooks removed


def test_deep_shrink_second_depth_window():
    shrink = DeepShrink(depth_1=3, timesteps_1=800, depth_2=1, timesteps_2=400)
    assert [shrink.depth_at(t) for t in (999, 800, 799, 400, 399)] == [3, 3, 1, 1, None]


def test_gradual_latent_grows_every_n_steps_below_its_timestep():
    config = build_tiny_components("sd1")["scheduler"].config
    scheduler = scheduler_class().from_config(config)
    scheduler.configure(GradualLatent(timesteps=600, ratio=0.5, ratio_step=0.25, every_n_steps=2), (32, 32))
    scheduler.set_timesteps(8)
    latents = torch.randn(1, 4, 16, 16)
    sizes = []
    for t in scheduler.timesteps:
        latents = scheduler.step(torch.zeros_like(latents), t, latents, generator=torch.Generator().manual_seed(0)).prev_sample
        sizes.append(latents.shape[-1])
    first_growth = next(i for i, t in enumerate(scheduler.timesteps) if t < 600)
    assert sizes[:first_growth] == [16] * first_growth
    assert sizes[first_growth] == 24 and sizes[-1] == 32  # 0.75 then 1.0 of the 32-wide latent


def test_starting_noise_is_the_pipelines_noise_unless_an_option_fires():
    shape = (4, 8, 8)
    assert torch.equal(starting_noise(5, shape, None), image_noise(5, shape))
    assert torch.equal(starting_noise(5, shape, NoiseSettings(offset_prob=0.0, offset_range=(1, 1))), image_noise(5, shape))
    shifted = starting_noise(5, shape, NoiseSettings(offset_prob=1.0, offset_range=(0.5, 0.5)))
    assert torch.allclose(shifted - image_noise(5, shape), torch.full_like(shifted, 0.5))  # randn*(0)+0.5
    pyramid = starting_noise(5, shape, NoiseSettings(pyramid_prob=1.0, pyramid_discount_range=(0.3, 0.3)))
    assert abs(float(pyramid.std()) - 1.0) < 1e-5 and torch.equal(pyramid, starting_noise(5, shape, NoiseSettings(
        pyramid_prob=1.0, pyramid_discount_range=(0.3, 0.3))))


def test_emb_normalize_modes():
    random.seed(0)
    hidden = torch.randn(1, 4, 3) + 0.5
    weights = torch.tensor([[1.0, 2.0, 1.0, 0.5]])
    original, absolute, none = (apply_weights(hidden, weights, m) for m in ("original", "abs", "none"))
    assert torch.allclose(original.mean(), hidden.mean(), atol=1e-6)
    assert torch.allclose(absolute.abs().mean(), hidden.abs().mean(), atol=1e-6)
    assert torch.allclose(none, hidden * weights.unsqueeze(-1))
