"""Specification of the diffusion loss and its weightings, against hand-computed values on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from library.training.loss import (
    compute_loss,
    debiased_estimation_weight,
    huber_threshold,
    loss_weights,
    min_snr_weight,
    resize_mask,
    snr_table,
    target_for,
    v_pred_like_weight,
    v_pred_scale,
)
from library.training.noise import make_noise_scheduler


@pytest.fixture(scope="module")
def scheduler():
    return make_noise_scheduler()


@pytest.fixture(scope="module")
def snr(scheduler):
    return snr_table(scheduler)


def _pair():
    pred = torch.zeros(2, 1, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    return pred, target


def test_l2_and_l1_are_per_sample_means():
    pred, target = _pair()
    assert compute_loss(pred, target).tolist() == pytest.approx([(1 + 4 + 9 + 16) / 4, 0.25])
    assert compute_loss(pred, target, loss_type="l1").tolist() == pytest.approx([2.5, 0.5])
    assert compute_loss(pred.half(), target.half()).dtype == torch.float32


def test_huber_and_smooth_l1_formulas(scheduler):
    pred, target = _pair()
    t = torch.tensor([0, 0])
    c = 0.5

    def pseudo(d):
        return math.sqrt(d * d + c * c) - c

    huber = compute_loss(pred, target, loss_type="huber", huber_schedule="constant", huber_c=c, timesteps=t)
    assert huber.tolist() == pytest.approx([2 * c * sum(pseudo(d) for d in (1, 2, 3, 4)) / 4, 2 * c * pseudo(0.5)])
    smooth = compute_loss(pred, target, loss_type="smooth_l1", huber_schedule="constant", huber_c=c, timesteps=t)
    assert smooth.tolist() == pytest.approx([2 * sum(pseudo(d) for d in (1, 2, 3, 4)) / 4, 2 * pseudo(0.5)])


def test_huber_tends_to_l2_for_a_large_c():
    pred, target = _pair()
    huber = compute_loss(pred, target, loss_type="huber", huber_schedule="constant", huber_c=1e4, timesteps=torch.tensor([5, 5]))
    assert torch.allclose(huber, compute_loss(pred, target), rtol=1e-3)


def test_huber_threshold_schedules(scheduler):
    t = torch.tensor([0, 500, 1000 - 1])
    c, scale = 0.1, 2.0
    constant = huber_threshold(t, scheduler, huber_schedule="constant", huber_c=c, huber_scale=scale)
    assert constant.tolist() == pytest.approx([0.2] * 3)
    exponential = huber_threshold(t, scheduler, huber_schedule="exponential", huber_c=c, huber_scale=scale)
    assert exponential.tolist() == pytest.approx([scale * c ** (s / 1000) for s in (0, 500, 999)])
    ac = scheduler.alphas_cumprod[t].double()
    sigmas = ((1 - ac) / ac).sqrt()
    expected = (1 - c) / (1 + sigmas) ** 2 + c
    assert huber_threshold(t, scheduler, huber_schedule="snr", huber_c=c).tolist() == pytest.approx(expected.tolist(), rel=1e-5)


def test_masks_weight_the_elementwise_loss_after_an_area_resize():
    pred = torch.zeros(1, 4, 2, 2)
    target = torch.ones(1, 4, 2, 2)
    assert compute_loss(pred, target, mask=torch.ones(1, 16, 16)).item() == pytest.approx(1.0)
    left = torch.zeros(1, 16, 16)
    left[:, :, :8] = 1.0  # left half of the image kept
    assert compute_loss(pred, target, mask=left).item() == pytest.approx(0.5)
    resized = resize_mask(left.unsqueeze(1), (2, 2))
    assert resized.shape == (1, 1, 2, 2) and resized[0, 0].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    quarter = torch.full((1, 1, 16, 16), 0.25)
    assert compute_loss(pred, target, mask=quarter).item() == pytest.approx(0.25)


def test_targets_for_epsilon_and_v_prediction(scheduler):
    latents, noise = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    t = torch.tensor([100, 900])
    assert target_for(scheduler, latents, noise, t) is noise
    ac = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    v = target_for(scheduler, latents, noise, t, prediction_type="v_prediction")
    assert torch.allclose(v, ac.sqrt() * noise - (1 - ac).sqrt() * latents, atol=1e-6)
    v_sched = make_noise_scheduler(v_parameterization=True)
    assert torch.allclose(target_for(v_sched, latents, noise, t), v, atol=1e-6)


def test_snr_table(scheduler, snr):
    ac = scheduler.alphas_cumprod
    assert snr.shape == (1000,) and torch.allclose(snr, ac / (1 - ac))
    assert snr[0].item() > 1000  # why sd-scripts caps SNR at 1000 where it divides by it


def test_min_snr_gamma(snr):
    t = torch.tensor([0, 300, 999])
    s = snr[t]
    assert min_snr_weight(t, snr, 5.0).tolist() == pytest.approx((torch.clamp(s, max=5) / s).tolist())
    assert min_snr_weight(t, snr, 5.0, v_prediction=True).tolist() == pytest.approx((torch.clamp(s, max=5) / (s + 1)).tolist())
    zero = torch.tensor([1.0, 0.0])  # zero terminal SNR at the last step: the weight's limit, 1, not 0/0
    assert min_snr_weight(torch.tensor([0, 1]), zero, 5.0).tolist() == [1.0, 1.0]


def test_v_prediction_scalings_and_debiased_estimation(snr):
    t = torch.tensor([0, 300, 999])
    s = torch.clamp(snr[t], max=1000)
    assert v_pred_scale(t, snr).tolist() == pytest.approx((s / (s + 1)).tolist())
    assert v_pred_scale(t, snr)[0].item() == pytest.approx(1000 / 1001)
    assert v_pred_like_weight(t, snr, 0.2).tolist() == pytest.approx((1 + 0.2 * (s + 1) / s).tolist())
    assert debiased_estimation_weight(t, snr).tolist() == pytest.approx((1 / s.sqrt()).tolist())
    assert debiased_estimation_weight(t, snr, v_prediction=True).tolist() == pytest.approx((1 / (s + 1)).tolist())


def test_loss_weights_multiply_the_enabled_weightings(snr):
    t = torch.tensor([10, 600])
    assert loss_weights(t, snr).tolist() == [1.0, 1.0]
    combined = loss_weights(t, snr, min_snr_gamma=5, debiased_estimation_loss=True)
    expected = min_snr_weight(t, snr, 5) * debiased_estimation_weight(t, snr)
    assert torch.allclose(combined, expected)
    v = loss_weights(t, snr, v_prediction=True, min_snr_gamma=5, scale_v_pred_loss_like_noise_pred=True)
    assert torch.allclose(v, min_snr_weight(t, snr, 5, v_prediction=True) * v_pred_scale(t, snr))
