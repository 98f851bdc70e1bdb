"""Half precision for the trainer: fp16 loss scaling on every device, full fp16/bf16, and NaN latents from a half VAE.

Frozen weights are stored in the mixed-precision dtype; the trained vectors always stay fp32 master copies (see
`library.token_embedding`). Under `--mixed_precision fp16` small gradients would underflow in fp16, so the loss is
multiplied by a dynamic scale before the backward (`torch.amp.GradScaler`): a step whose gradients overflow to
Inf/NaN is skipped (the vectors are not written) and the scale halves; after 2000 clean steps it doubles.

accelerate 1.16 makes the scaler and the fp16 autocast only for GPU-like devices: on a CPU it silently trains fp16
weights without either (its `Accelerator.__init__` skips both when `device.type == "cpu"`). `add_cpu_loss_scaling`
gives the CPU the same scaler and autocast, so the CPU runs the very code path a CUDA GPU runs (and tests exercise
it): `accelerator.backward` scales, `clip_grad_norm_` unscales, the prepared optimizer steps through the scaler.
"""

from __future__ import annotations

import argparse

import torch
from accelerate.utils import AutocastKwargs, GradScalerKwargs

from library.errors import UserError

INIT_SCALE = 2.0**16
"""The first loss scale (torch's and accelerate's default). Tests raise it to force an overflow."""


def accelerator_kwargs_handlers(args: argparse.Namespace) -> list:
    """accelerate handlers for the precision flags: the scaler's first scale; no autocast under --full_fp16/bf16.

    --full_fp16 / --full_bf16 run the whole forward in the half dtype (no fp32 islands for norms and softmax,
    less memory and compute). Unlike sd-scripts, the trained vectors stay fp32 master copies even then: an update of
    lr * grad is often below fp16's resolution of a vector entry, and TI trains nothing else.
    """
    handlers: list = []
    if args.mixed_precision == "fp16":
        handlers.append(GradScalerKwargs(init_scale=INIT_SCALE))
    if getattr(args, "full_fp16", False) or getattr(args, "full_bf16", False):
        handlers.append(AutocastKwargs(enabled=False))
    return handlers


def add_cpu_loss_scaling(accelerator) -> bool:
    """Give an fp16 run on a CPU the GradScaler and autocast accelerate gives a GPU; True when it did.

    Must run before `accelerator.prepare`, which hands the scaler to the optimizer and wraps the models' forward.
    """
    if accelerator.mixed_precision != "fp16" or accelerator.scaler is not None or accelerator.device.type != "cpu":
        return False
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    accelerator.native_amp = True  # accelerate's switch for autocast, scaled backward and unscaled clipping
    return True


def step_was_skipped(optimizer) -> bool:
    """Whether the prepared optimizer's last step was skipped by the loss scaler (gradients overflowed)."""
    return bool(getattr(optimizer, "step_was_skipped", False))


def loss_scaling_line(accelerator) -> str | None:
    """The summary's note on loss scaling, or None without a scaler."""
    scaler = accelerator.scaler
    if scaler is None:
        return None
    return f"fp16 loss scaling (scale {scaler.get_scale():g}); steps whose gradients overflow are skipped and counted"


def check_finite_latents(latents: torch.Tensor, vae_dtype: torch.dtype, where: str) -> None:
    """Refuse NaN/Inf latents: the classic symptom of an SD1.5/SDXL VAE run in fp16, whose activations overflow."""
    if bool(torch.isfinite(latents).all()):
        return
    hint = (
        "the VAE runs in float16, whose activations overflow for many images: add --no_half_vae (keeps the VAE in float32)"
        if vae_dtype == torch.float16
        else "check the VAE weights (a damaged or incompatible VAE)"
    )
    raise UserError(f"the VAE produced NaN/Inf latents for {where}; {hint}")
