"""Specification of noise, timestep sampling and forward diffusion, checked against hand-computed formulas."""

from __future__ import annotations

import pytest
import torch

from library.errors import UserError
from library.training.noise import (
    add_noise,
    apply_zero_terminal_snr,
    make_noise_scheduler,
    pyramid_noise,
    sample_noise,
    sample_timesteps,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def latents() -> torch.Tensor:
    return torch.randn(3, 4, 8, 6, generator=_gen(123)) + 0.5


def test_plain_noise_is_gaussian_shaped_like_the_latents_and_reproducible(latents):
    noise = sample_noise(latents, generator=_gen(1))
    assert noise.shape == latents.shape and noise.dtype == latents.dtype
    assert torch.equal(noise, torch.randn(latents.shape, generator=_gen(1)))
    assert torch.equal(noise, sample_noise(latents, generator=_gen(1)))
    assert not torch.equal(noise, sample_noise(latents, generator=_gen(2)))


def test_noise_offset_adds_a_per_channel_constant(latents):
    noise = sample_noise(latents, noise_offset=0.1, generator=_gen(1))
    g = _gen(1)
    base = torch.randn(latents.shape, generator=g)
    offset = torch.randn((3, 4, 1, 1), generator=g)
    assert torch.allclose(noise, base + 0.1 * offset)


def test_noise_offset_random_strength_draws_the_strength_first(latents):
    noise = sample_noise(latents, noise_offset=0.1, noise_offset_random_strength=True, generator=_gen(1))
    g = _gen(1)
    base = torch.randn(latents.shape, generator=g)
    strength = torch.rand(1, generator=g) * 0.1
    offset = torch.randn((3, 4, 1, 1), generator=g)
    assert torch.allclose(noise, base + strength * offset)


def test_adaptive_noise_scale_grows_the_offset_with_the_latent_mean(latents):
    noise = sample_noise(latents, noise_offset=0.1, adaptive_noise_scale=0.05, generator=_gen(1))
    g = _gen(1)
    base = torch.randn(latents.shape, generator=g)
    offset = torch.randn((3, 4, 1, 1), generator=g)
    strength = 0.1 + 0.05 * latents.mean(dim=(2, 3), keepdim=True).abs()
    assert torch.allclose(noise, base + strength * offset)
    # a negative scale is clamped so the strength never goes below 0
    noise = sample_noise(latents, noise_offset=0.01, adaptive_noise_scale=-10.0, generator=_gen(1))
    assert torch.allclose(noise, base)


def test_multires_noise_is_renormalized_and_reproducible(latents):
    noise = sample_noise(latents, multires_noise_iterations=6, multires_noise_discount=0.3, generator=_gen(5))
    assert noise.shape == latents.shape
    assert noise.std().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(noise, sample_noise(latents, multires_noise_iterations=6, generator=_gen(5)))
    plain = torch.randn(latents.shape, generator=_gen(5))
    assert not torch.allclose(noise, plain)
    # one level of weight discount**0 = 1 at full size: (n + n') / std
    g = _gen(7)
    n = torch.randn(2, 1, 4, 4, generator=g)
    out = pyramid_noise(n, 1, 0.3, generator=_gen(8))
    g8 = _gen(8)
    torch.rand(1, generator=g8)  # the level's size factor (unused at level 0: r**0 = 1)
    expected = n + torch.randn(2, 1, 4, 4, generator=g8)
    assert torch.allclose(out, expected / expected.std())


def test_timesteps_are_uniform_integers_in_range_and_reproducible():
    t = sample_timesteps(4096, generator=_gen(0))
    assert t.dtype == torch.int64 and t.shape == (4096,)
    assert t.min() >= 0 and t.max() <= 999 and t.float().mean().item() == pytest.approx(499.5, rel=0.05)
    assert torch.equal(t, sample_timesteps(4096, generator=_gen(0)))
    t = sample_timesteps(512, min_timestep=200, max_timestep=300, generator=_gen(0))
    assert t.min() >= 200 and t.max() <= 299
    assert torch.equal(sample_timesteps(3, min_timestep=500, max_timestep=500), torch.full((3,), 500))


@pytest.mark.parametrize(("low", "high"), [(-1, 10), (10, 5), (0, 1001), (1000, 1000)])
def test_bad_timestep_ranges_name_the_flags(low, high):
    with pytest.raises(UserError, match="--min_timestep"):
        sample_timesteps(2, min_timestep=low, max_timestep=high)


def test_add_noise_is_the_forward_diffusion_formula(latents):
    scheduler = make_noise_scheduler()
    noise = torch.randn(latents.shape, generator=_gen(3))
    t = torch.tensor([0, 500, 999])
    ac = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = ac.sqrt() * latents + (1 - ac).sqrt() * noise
    assert torch.allclose(add_noise(scheduler, latents, noise, t), expected, atol=1e-6)


def test_input_perturbation_perturbs_the_input_only(latents):
    scheduler = make_noise_scheduler()
    noise = torch.randn(latents.shape, generator=_gen(3))
    t = torch.tensor([10, 500, 900])
    noisy = add_noise(scheduler, latents, noise, t, ip_noise_gamma=0.1, generator=_gen(9))
    extra = torch.randn(latents.shape, generator=_gen(9))
    assert torch.allclose(noisy, scheduler.add_noise(latents, noise + 0.1 * extra, t), atol=1e-6)
    g = _gen(9)
    strength = torch.rand(1, generator=g) * 0.1
    extra = torch.randn(latents.shape, generator=g)
    noisy = add_noise(scheduler, latents, noise, t, ip_noise_gamma=0.1, ip_noise_gamma_random_strength=True, generator=_gen(9))
    assert torch.allclose(noisy, scheduler.add_noise(latents, noise + strength * extra, t), atol=1e-6)


def test_sd_schedule_and_zero_terminal_snr():
    scheduler = make_noise_scheduler(v_parameterization=True)
    assert scheduler.config.prediction_type == "v_prediction"
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    assert torch.allclose(scheduler.betas, betas)
    zero = make_noise_scheduler(zero_terminal_snr=True)
    assert zero.alphas_cumprod[-1].item() == pytest.approx(0.0, abs=1e-7)
    assert zero.alphas_cumprod[0].item() == pytest.approx(scheduler.alphas_cumprod[0].item(), rel=1e-5)
    apply_zero_terminal_snr(scheduler)  # in place, on an existing scheduler
    assert torch.allclose(scheduler.alphas_cumprod, zero.alphas_cumprod, atol=1e-7)
    assert torch.allclose(scheduler.alphas_cumprod, torch.cumprod(1 - scheduler.betas, 0))
