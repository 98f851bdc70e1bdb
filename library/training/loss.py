"""The diffusion loss and sd-scripts' per-sample loss weightings, as pure tensor functions.

`LossSettings.per_sample` is what the training step calls; it reads:
    target = target_for(scheduler, latents, noise, timesteps)
    loss = compute_loss(pred, target, loss_type=..., timesteps=timesteps, scheduler=scheduler, mask=alpha_mask)  # (B,)
    loss = loss * batch_loss_weights * loss_weights(timesteps, snr, ...)                                          # (B,)
with `snr = snr_table(scheduler)` computed once. A new weighting is a field of LossSettings (read in its
`from_args`) and a factor in `loss_weights`: nothing outside this module changes. Formulas follow sd-scripts' custom_train_functions.py and
train_util.py (conditional_loss, get_huber_threshold_if_needed, apply_masked_loss).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from library.errors import UserError

LOSS_TYPES = ("l2", "l1", "huber", "smooth_l1")
HUBER_SCHEDULES = ("constant", "exponential", "snr")
SNR_CLAMP = 1000.0  # sd-scripts caps SNR at 1000 where it divides by it (SNR at t=0 is ~1175 for SD's betas)


def target_for(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, *, prediction_type: str | None = None):
    """What the U-Net should predict: the noise (epsilon) or the velocity v (v-parameterization)."""
    kind = prediction_type or scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise UserError(f"prediction type '{kind}' is not supported for training (use epsilon, or --v_parameterization)")


def snr_table(scheduler) -> torch.Tensor:
    """SNR(t) = alpha_bar / (1 - alpha_bar) for every training timestep, float32 (T,). Compute once per run."""
    alphas_cumprod = scheduler.alphas_cumprod.float().cpu()
    return alphas_cumprod / (1.0 - alphas_cumprod)


def huber_threshold(
    timesteps: torch.Tensor,
    scheduler,
    *,
    huber_schedule: str = "snr",
    huber_c: float = 0.1,
    huber_scale: float = 1.0,
) -> torch.Tensor:
    """The per-sample Huber parameter c(t), (B,) float32 on the timesteps' device."""
    if huber_schedule == "constant":
        return torch.full(timesteps.shape, huber_c * huber_scale, dtype=torch.float32, device=timesteps.device)
    if huber_schedule == "exponential":
        alpha = -math.log(huber_c) / scheduler.config.num_train_timesteps
        return torch.exp(-alpha * timesteps.float()) * huber_scale
    if huber_schedule == "snr":
        alphas_cumprod = scheduler.alphas_cumprod.float().to(timesteps.device)[timesteps]
        sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
        return (1 - huber_c) / (1 + sigmas) ** 2 + huber_c
    raise UserError(f"--huber_schedule {huber_schedule} is not one of {', '.join(HUBER_SCHEDULES)}")


def compute_loss(
    model_pred: torch.Tensor,
    target: torch.Tensor,
    *,
    loss_type: str = "l2",
    huber_c: float = 0.1,
    huber_schedule: str = "snr",
    huber_scale: float = 1.0,
    timesteps: torch.Tensor | None = None,
    scheduler=None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample loss (B,) in float32: elementwise loss, times the resized mask if given, averaged over C, H, W.

    `mask` is an alpha mask in [0, 1], (B, H, W) or (B, 1, H, W) at any resolution; it is area-resized to the
    latent size as sd-scripts' apply_masked_loss does. Huber and smooth L1 need `timesteps` and `scheduler`.
    """
    pred, target = model_pred.float(), target.float()
    if loss_type == "l2":
        loss = (pred - target) ** 2
    elif loss_type == "l1":
        loss = (pred - target).abs()
    elif loss_type in ("huber", "smooth_l1"):
        if timesteps is None or (scheduler is None and huber_schedule != "constant"):
            raise ValueError(f"loss_type {loss_type} needs timesteps and the noise scheduler")
        c = huber_threshold(timesteps, scheduler, huber_schedule=huber_schedule, huber_c=huber_c, huber_scale=huber_scale)
        c = c.to(pred.device).view(-1, *([1] * (pred.ndim - 1)))
        squared = (pred - target) ** 2
        # sqrt(d^2 + c^2) - c written as d^2 / (sqrt(d^2 + c^2) + c): the same value without float32 cancellation
        pseudo = squared / (torch.sqrt(squared + c**2) + c)
        loss = 2 * c * pseudo if loss_type == "huber" else 2 * pseudo
    else:
        raise UserError(f"--loss_type {loss_type} is not one of {', '.join(LOSS_TYPES)}")
    if mask is not None:
        loss = loss * resize_mask(mask, loss.shape[-2:]).to(loss.device)
    return loss.mean(dim=tuple(range(1, loss.ndim)))


def resize_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """An alpha mask (B, H, W) or (B, 1, H, W) area-resized to `size`, as (B, 1, h, w) float32."""
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    return F.interpolate(mask.float(), size=tuple(size), mode="area")


# ---- per-sample weightings: each returns (B,) multipliers from the timesteps' SNR -------------------------


def _snr_at(snr: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    return snr.to(timesteps.device)[timesteps]


def min_snr_weight(timesteps: torch.Tensor, snr: torch.Tensor, gamma: float, *, v_prediction: bool = False) -> torch.Tensor:
    """Min-SNR-gamma (arXiv 2303.09556): min(SNR, gamma) / SNR, or / (SNR + 1) for v-prediction."""
    s = _snr_at(snr, timesteps)
    clipped = torch.clamp(s, max=gamma)
    if v_prediction:
        return clipped / (s + 1)
    # SNR 0 (last step under zero terminal SNR) is 0/0 in sd-scripts; the limit of min(s, gamma)/s there is 1
    return torch.where(s > 0, clipped / s.clamp(min=torch.finfo(s.dtype).tiny), torch.ones_like(s))


def v_pred_scale(timesteps: torch.Tensor, snr: torch.Tensor) -> torch.Tensor:
    """SNR / (SNR + 1) with SNR capped at 1000: scales a v-prediction loss like a noise-prediction loss."""
    s = torch.clamp(_snr_at(snr, timesteps), max=SNR_CLAMP)
    return s / (s + 1)


def v_pred_like_weight(timesteps: torch.Tensor, snr: torch.Tensor, strength: float) -> torch.Tensor:
    """`--v_pred_like_loss`: loss + strength * loss / scale, i.e. a multiplier 1 + strength / scale."""
    return 1 + strength / v_pred_scale(timesteps, snr)


def debiased_estimation_weight(timesteps: torch.Tensor, snr: torch.Tensor, *, v_prediction: bool = False) -> torch.Tensor:
    """Debiased estimation (arXiv 2310.08442): 1 / sqrt(SNR), or 1 / (SNR + 1) for v-prediction; SNR capped at 1000."""
    s = torch.clamp(_snr_at(snr, timesteps), max=SNR_CLAMP)
    return 1 / (s + 1) if v_prediction else 1 / torch.sqrt(s)


def loss_weights(
    timesteps: torch.Tensor,
    snr: torch.Tensor,
    *,
    v_prediction: bool = False,
    min_snr_gamma: float | None = None,
    scale_v_pred_loss_like_noise_pred: bool = False,
    v_pred_like_loss: float | None = None,
    debiased_estimation_loss: bool = False,
) -> torch.Tensor:
    """The product of the enabled weightings, (B,) float32 (all ones when none is enabled)."""
    weight = torch.ones(timesteps.shape, dtype=torch.float32, device=timesteps.device)
    if min_snr_gamma:
        weight = weight * min_snr_weight(timesteps, snr, min_snr_gamma, v_prediction=v_prediction)
    if scale_v_pred_loss_like_noise_pred:
        weight = weight * v_pred_scale(timesteps, snr)
    if v_pred_like_loss:
        weight = weight * v_pred_like_weight(timesteps, snr, v_pred_like_loss)
    if debiased_estimation_loss:
        weight = weight * debiased_estimation_weight(timesteps, snr, v_prediction=v_prediction)
    return weight


@dataclass(frozen=True)
class LossSettings:
    """The loss flags of a run and the model's prediction type, read once; `per_sample` applies them."""

    loss_type: str = "l2"
    huber_schedule: str = "snr"
    huber_c: float = 0.1
    huber_scale: float = 1.0
    min_snr_gamma: float | None = None
    scale_v_pred_loss_like_noise_pred: bool = False
    v_pred_like_loss: float | None = None
    debiased_estimation_loss: bool = False
    masked_loss: bool = False
    v_prediction: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, v_prediction: bool) -> "LossSettings":
        return cls(
            loss_type=args.loss_type,
            huber_schedule=args.huber_schedule,
            huber_c=args.huber_c,
            huber_scale=getattr(args, "huber_scale", 1.0),
            min_snr_gamma=args.min_snr_gamma,
            scale_v_pred_loss_like_noise_pred=args.scale_v_pred_loss_like_noise_pred,
            v_pred_like_loss=args.v_pred_like_loss,
            debiased_estimation_loss=args.debiased_estimation_loss,
            masked_loss=args.masked_loss or args.alpha_mask,  # --alpha_mask reads the mask, so it also applies it
            v_prediction=v_prediction,
        )

    def per_sample(self, prediction: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                   scheduler, snr: torch.Tensor, batch: dict) -> torch.Tensor:
        """Weighted loss per sample (B,) float32: the loss, times the batch's loss weights, times the SNR weightings."""
        target = target_for(scheduler, latents, noise, timesteps, prediction_type="v_prediction" if self.v_prediction else "epsilon")
        per_sample = compute_loss(
            prediction.float(),
            target,
            loss_type=self.loss_type,
            huber_c=self.huber_c,
            huber_schedule=self.huber_schedule,
            huber_scale=self.huber_scale,
            timesteps=timesteps,
            scheduler=scheduler,
            mask=batch.get("alpha_masks") if self.masked_loss else None,
        )
        per_sample = per_sample * batch["loss_weights"].to(per_sample.device)
        return per_sample * loss_weights(
            timesteps,
            snr,
            v_prediction=self.v_prediction,
            min_snr_gamma=self.min_snr_gamma,
            scale_v_pred_loss_like_noise_pred=self.scale_v_pred_loss_like_noise_pred,
            v_pred_like_loss=self.v_pred_like_loss,
            debiased_estimation_loss=self.debiased_estimation_loss,
        )
