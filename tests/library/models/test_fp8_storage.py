"""Specification of --fp8_base: float8 weight storage for the frozen U-Net, with gradients still reaching its inputs."""

from __future__ import annotations

import copy

import torch

from library.models.tiny import build_tiny_components
from library.models.fp8_storage import FP8_DTYPE, fp8_unsupported_reason, store_in_fp8


def _unet_and_inputs():
    unet = build_tiny_components("sd1")["unet"].eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    t = torch.tensor([100, 700])
    h = torch.randn(2, 77, unet.config.cross_attention_dim, generator=gen)
    return unet, x, t, h


def _forward_backward(unet, x, t, h):
    h = h.clone().requires_grad_(True)
    out = unet(x, t, h).sample
    out.square().mean().backward()
    return out.detach(), h.grad


def test_linear_and_conv_weights_are_stored_in_float8_and_norms_are_not():
    unet, *_ = _unet_and_inputs()
    before = sum(p.numel() * p.element_size() for p in unet.parameters())
    changed = store_in_fp8(unet)
    convs_and_linears = [m for m in unet.modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)]
    assert changed == len(convs_and_linears) > 0
    assert all(m.weight.dtype == FP8_DTYPE for m in convs_and_linears)
    norms = [m for m in unet.modules() if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm))]
    assert norms and all(m.weight.dtype == torch.float32 for m in norms)
    after = sum(p.numel() * p.element_size() for p in unet.parameters())
    assert after < 0.3 * before  # fp32 -> fp8 for almost every weight


def test_gradients_equal_those_of_the_model_with_float8_rounded_weights():
    # the only change is the rounding of each weight to float8: outputs and input gradients equal those of an fp32
    # model whose weights were rounded the same way, and stay close in direction to the unrounded model's
    unet, x, t, h = _unet_and_inputs()
    rounded = copy.deepcopy(unet)
    for module in rounded.modules():
        if type(module) in (torch.nn.Linear, torch.nn.Conv2d):
            module.weight.data = module.weight.data.to(FP8_DTYPE).float()
    full_out, full_grad = _forward_backward(unet, x, t, h)
    rounded_out, rounded_grad = _forward_backward(rounded, x, t, h)
    store_in_fp8(unet)
    out, grad = _forward_backward(unet, x, t, h)
    torch.testing.assert_close(out, rounded_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, rounded_grad, rtol=1e-5, atol=1e-9)
    assert torch.nn.functional.cosine_similarity(grad.flatten(), full_grad.flatten(), dim=0) > 0.95
    assert torch.nn.functional.cosine_similarity(out.flatten(), full_out.flatten(), dim=0) > 0.99


def test_the_backward_pass_upcasts_again_instead_of_keeping_upcast_weights():
    # autograd saves only the float8 weights: no saved tensor of the graph is a compute-dtype weight copy
    unet, x, t, h = _unet_and_inputs()
    store_in_fp8(unet)
    weight_shapes = {tuple(m.weight.shape) for m in unet.modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)}
    saved_fp32_weights = []

    def pack(tensor):
        if tensor.dtype == torch.float32 and tuple(tensor.shape) in weight_shapes and tensor.dim() >= 2:
            saved_fp32_weights.append(tuple(tensor.shape))
        return tensor

    h = h.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = unet(x, t, h).sample
    out.mean().backward()
    assert saved_fp32_weights == []


def test_half_precision_autocast_runs_on_float8_storage():
    unet, x, t, h = _unet_and_inputs()
    store_in_fp8(unet)
    with torch.autocast("cpu", dtype=torch.float16):
        out = unet(x, t, h).sample
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_float8_is_available_on_this_cpu_and_refused_with_a_reason_on_mps():
    assert fp8_unsupported_reason(torch.device("cpu")) is None
    assert "MPS" in fp8_unsupported_reason(torch.device("mps"))
