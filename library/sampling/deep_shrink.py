"""Deep Shrink (sd-scripts' `--ds_*`): early steps see a smaller picture deep in the UNet, for large images.

While the timestep is at least `timesteps_1`, the hidden state entering input block `depth_1` (sd-scripts counts
the UNet's input blocks: 0 is the first convolution, then each resnet(+attention) layer and each downsampler) is
shrunk by `ratio` (bicubic); on the way up, wherever the state and the skip connection it is joined with differ
in size, the state is resized (bicubic) to the skip's size, and the output to the input's size. With `depth_2`,
the same happens at that block for timesteps in [timesteps_2, timesteps_1). Large images then get the global
composition of the size the model was trained at.

Implemented with forward hooks on diffusers' UNet2DConditionModel (no copy of the UNet's forward).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from library.errors import UserError


@dataclass(frozen=True)
class DeepShrink:
    depth_1: int
    timesteps_1: int = 650
    depth_2: int | None = None
    timesteps_2: int = 650
    ratio: float = 0.5

    def depth_at(self, t: float) -> int | None:
        """The input block shrunk at timestep `t`, or None."""
        if t >= self.timesteps_1:
            return self.depth_1
        if self.depth_2 is not None and self.timesteps_2 <= t < self.timesteps_1:
            return self.depth_2
        return None


def input_blocks(unet) -> list[torch.nn.Module]:
    """The modules that start sd-scripts' input blocks, in its order, found in a diffusers UNet."""
    blocks: list[torch.nn.Module] = [unet.conv_in]
    for down in unet.down_blocks:
        blocks.extend(down.resnets)  # a resnet starts each layer (an attention, if any, follows it)
        if getattr(down, "downsamplers", None):
            blocks.append(down.downsamplers[0])
    return blocks


def check_depths(unet, shrink: DeepShrink, where: str = "--ds_depth_1") -> None:
    last = len(input_blocks(unet)) - 1
    for depth in (shrink.depth_1, shrink.depth_2):
        if depth is not None and not 0 <= depth <= last:
            raise UserError(f"{where}: Deep Shrink depth {depth} is outside this model's input blocks 0-{last}")


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x.float(), size=tuple(size), mode="bicubic", align_corners=False).to(x.dtype)


def _replace_first(value, fn):
    """Apply fn to the tensor a module returned (a tensor, a tuple starting with it, or an output with .sample)."""
    if torch.is_tensor(value):
        return fn(value)
    if isinstance(value, tuple):
        return (fn(value[0]),) + tuple(value[1:])
    value.sample = fn(value.sample)
    return value


@contextlib.contextmanager
def deep_shrink(unet, shrink: DeepShrink | None):
    """Apply `shrink` to every UNet call inside the block (nothing when None)."""
    if shrink is None:
        yield
        return
    check_depths(unet, shrink)
    blocks = input_blocks(unet)
    state: dict = {"depth": None, "size": None, "skips": ()}
    handles = []

    def on_unet(_module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        t = float(t.flatten()[0]) if torch.is_tensor(t) else float(t)
        state["depth"], state["size"] = shrink.depth_at(t), sample.shape[-2:]

    handles.append(unet.register_forward_pre_hook(on_unet, with_kwargs=True))

    for depth, block in enumerate(blocks):
        def shrink_input(_module, args, depth=depth):
            if state["depth"] != depth:
                return None
            x = args[0]
            size = (max(1, int(x.shape[-2] * shrink.ratio)), max(1, int(x.shape[-1] * shrink.ratio)))
            return (_resize(x, size),) + tuple(args[1:])

        handles.append(block.register_forward_pre_hook(shrink_input))

    for up in unet.up_blocks:
        def enter_up(_module, args, kwargs):
            skips = kwargs.get("res_hidden_states_tuple", ())
            state["skips"] = skips
            if skips and "hidden_states" in kwargs:
                kwargs["hidden_states"] = _resize(kwargs["hidden_states"], skips[-1].shape[-2:])
            return args, kwargs

        handles.append(up.register_forward_pre_hook(enter_up, with_kwargs=True))
        attentions = getattr(up, "attentions", None)
        layer_ends = list(attentions) if attentions else list(up.resnets)
        for j, module in enumerate(layer_ends[:-1]):
            def before_next_skip(_module, _args, output, j=j):
                skips = state["skips"]
                if len(skips) < j + 2:
                    return None
                return _replace_first(output, lambda x: _resize(x, skips[-(j + 2)].shape[-2:]))

            handles.append(module.register_forward_hook(before_next_skip))

    last = unet.conv_norm_out if getattr(unet, "conv_norm_out", None) is not None else unet.conv_out
    handles.append(last.register_forward_pre_hook(lambda _m, args: (_resize(args[0], state["size"]),) + tuple(args[1:])))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
