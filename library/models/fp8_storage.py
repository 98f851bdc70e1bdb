"""--fp8_base: keep the frozen U-Net's Linear and Conv2d weights in float8 and upcast them layer by layer.

The U-Net is frozen in Textual Inversion, but the loss still back-propagates *through* it to the token vectors, so
every layer needs the gradient with respect to its input. Upcasting with a plain `.to()` (or autocast) would let
autograd keep each upcast weight until the backward pass, i.e. a full compute-dtype copy of the U-Net again. The
autograd functions below save the float8 weight instead and upcast it a second time in the backward pass, so at
most one layer's upcast copy is alive at a time. (diffusers' `enable_layerwise_casting` is meant for inference:
it casts the weights back in place after the forward pass, which breaks the backward pass.)

Norm layers and biases stay in the compute dtype: they are small and precision-sensitive.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn


class _Fp8Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight8: torch.Tensor, bias: torch.Tensor | None):
        ctx.save_for_backward(weight8)
        ctx.x_dtype = x.dtype
        return F.linear(x, weight8.to(x.dtype), None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight8,) = ctx.saved_tensors
        grad_x = grad.matmul(weight8.to(grad.dtype)) if ctx.needs_input_grad[0] else None
        return None if grad_x is None else grad_x.to(ctx.x_dtype), None, None


class _Fp8Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight8: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation, groups):
        ctx.save_for_backward(weight8)
        ctx.conv = (x.shape, x.dtype, stride, padding, dilation, groups)
        return F.conv2d(x, weight8.to(x.dtype), None if bias is None else bias.to(x.dtype), stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight8,) = ctx.saved_tensors
        shape, dtype, stride, padding, dilation, groups = ctx.conv
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(shape, weight8.to(grad.dtype), grad, stride, padding, dilation, groups).to(dtype)
        return grad_x, None, None, None, None, None, None


def _linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return _Fp8Linear.apply(x, self.weight, self.bias)


def _conv2d_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if self.padding_mode != "zeros":  # not used by the SD/SDXL U-Nets; keep the exact semantics anyway
        x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        return _Fp8Conv2d.apply(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
    return _Fp8Conv2d.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def store_in_fp8(model: nn.Module, compute_dtype: torch.dtype = torch.float32) -> int:
    """Convert the frozen model's Linear/Conv2d weights to float8 storage in place; returns how many layers changed.

    The model must not train its weights (TI never does); gradients still flow to its inputs. `compute_dtype` is
    what callers should feed it (see `compute_dtype_of`): the first parameter's dtype is now float8.
    """
    model._fp8_compute_dtype = compute_dtype
    changed = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            forward = _linear_forward
        elif type(module) is nn.Conv2d:
            forward = _conv2d_forward
        else:
            continue
        module.weight.requires_grad_(False)
        module.weight.data = module.weight.data.to(FP8_DTYPE)
        module.forward = types.MethodType(forward, module)
        changed += 1
    return changed


def compute_dtype_of(model: nn.Module) -> torch.dtype:
    """The dtype a model's inputs should have: its weights' dtype, or the compute dtype under --fp8_base."""
    fp8_compute = getattr(model, "_fp8_compute_dtype", None)
    return fp8_compute if fp8_compute is not None else next(model.parameters()).dtype


def fp8_unsupported_reason(device: torch.device) -> str | None:
    """Why float8 storage cannot work on `device`, or None when it can."""
    if not hasattr(torch, "float8_e4m3fn"):
        return f"this PyTorch ({torch.__version__}) has no float8 dtype; PyTorch 2.1 or newer is needed"
    if device.type == "mps":
        return "Apple MPS has no float8 dtype"
    try:
        torch.ones(2, device=device).to(FP8_DTYPE).to(torch.float32)
    except (RuntimeError, TypeError) as err:
        return f"{device.type} cannot convert to float8 ({str(err).splitlines()[0][:120]})"
    return None
