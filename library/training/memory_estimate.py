"""The peak memory a TI run will need on its device, printed before step 1, and the peak it really used.

Users pick a GPU (or a cloud instance) by this number. The estimate is a sum of parts that can be counted before any
step runs: the frozen weights as loaded (by dtype), the process itself (on a CPU: the interpreter, torch, and the
libraries; on CUDA `max_memory_allocated` does not count the context), the activations autograd keeps for the backward
of the largest bucket at this batch size, and the optimizer state of the trained vectors (kilobytes).

Activations are counted per U-Net level from the config: a ResNet block keeps about RESNET_SAVED tensors of its
level's size (channels x latent pixels), a transformer block about TRANSFORMER_SAVED (norms, q/k/v, attention
output, the GEGLU feed-forward's 8x-wide projection), a text-encoder layer TEXT_LAYER_SAVED of (tokens x hidden).
The two factors were fitted to SD1.5 at 256 px in fp32, whose saved activations measure 357 MiB counted from the
autograd graph (docs/performance.md). With gradient checkpointing, each block keeps only its input, plus one block's
internals while it is recomputed.
"""

from __future__ import annotations

import os
import platform
import resource
from dataclasses import dataclass, field
from pathlib import Path

import torch

RESNET_SAVED = 6
TRANSFORMER_SAVED = 24
TEXT_LAYER_SAVED = 20
GIB = 1024**3


@dataclass(frozen=True)
class UNetShape:
    """What the activation count needs from a UNet2DConditionModel config."""

    block_out_channels: tuple[int, ...]
    layers_per_block: int
    transformer_layers: tuple[int, ...]  # per level; 0 where the level has no attention

    @classmethod
    def from_config(cls, config) -> "UNetShape":
        levels = len(config.block_out_channels)
        attention = [("CrossAttn" in name) for name in config.down_block_types]
        depth = config.transformer_layers_per_block
        depth = list(depth) if isinstance(depth, (list, tuple)) else [depth] * levels
        layers = config.layers_per_block
        layers = layers[0] if isinstance(layers, (list, tuple)) else layers
        return cls(tuple(config.block_out_channels), int(layers), tuple(int(d) if a else 0 for d, a in zip(depth, attention)))


@dataclass(frozen=True)
class TextEncoderShape:
    hidden_size: int
    num_layers: int
    tokens: int  # positions per caption (77 per 75-token chunk)


@dataclass
class MemoryEstimate:
    """Bytes by part; `total` is the estimated peak."""

    device: str
    weights: dict[str, int] = field(default_factory=dict)  # dtype name -> bytes
    process: int = 0
    activations: int = 0
    optimizer_state: int = 0
    gradient_checkpointing: bool = False
    largest_batch: str = ""

    @property
    def total(self) -> int:
        return sum(self.weights.values()) + self.process + self.activations + self.optimizer_state

    def lines(self) -> list[str]:
        weights = ", ".join(f"{name} {b / GIB:.2f}" for name, b in sorted(self.weights.items()))
        kind = "with gradient checkpointing" if self.gradient_checkpointing else "without gradient checkpointing"
        return [
            f"  memory estimate:  {self.total / GIB:.2f} GiB peak on {self.device} = weights {sum(self.weights.values()) / GIB:.2f} ({weights})"
            f" + process {self.process / GIB:.2f} + activations {self.activations / GIB:.2f} ({self.largest_batch}, {kind})"
            f" + optimizer state {self.optimizer_state / 1024:.0f} KiB",
        ]


def activation_elements(unet: UNetShape, latent_hw: tuple[int, int], text_encoders: list[TextEncoderShape], *, gradient_checkpointing: bool) -> int:
    """Elements autograd keeps for one sample's backward (pure: shapes in, a count out)."""
    pixels = latent_hw[0] * latent_hw[1]
    resnet_units = transformer_units = 0  # sum over blocks of channels x pixels at the block's level
    largest = 0
    levels = len(unet.block_out_channels)
    for level, (channels, depth) in enumerate(zip(unet.block_out_channels, unet.transformer_layers)):
        size = channels * pixels // (4**level)
        blocks = unet.layers_per_block + (unet.layers_per_block + 1)  # down + up blocks of the level
        resnet_units += blocks * size
        transformer_units += blocks * depth * size
        largest = max(largest, size * (TRANSFORMER_SAVED if depth else RESNET_SAVED))
    deepest = unet.block_out_channels[-1] * pixels // (4 ** (levels - 1))
    resnet_units += 2 * deepest  # the mid block: two ResNets around one transformer
    transformer_units += max(unet.transformer_layers[-1], max(unet.transformer_layers)) * deepest
    text = sum(te.tokens * te.hidden_size * te.num_layers for te in text_encoders)
    if gradient_checkpointing:
        return resnet_units + transformer_units + largest + text
    return RESNET_SAVED * resnet_units + TRANSFORMER_SAVED * transformer_units + TEXT_LAYER_SAVED * text


def estimate_peak_memory(
    *,
    device: str,
    weight_bytes: dict[str, int],
    unet: UNetShape,
    text_encoders: list[TextEncoderShape],
    latent_hw: tuple[int, int],
    batch_size: int,
    activation_bytes: int,
    gradient_checkpointing: bool,
    trainable_params: int,
    optimizer_states_per_param: int = 2,
    process_bytes: int = 0,
) -> MemoryEstimate:
    """The estimated peak of a run from counts alone (pure; unit-tested)."""
    per_sample = activation_elements(unet, latent_hw, text_encoders, gradient_checkpointing=gradient_checkpointing)
    return MemoryEstimate(
        device=device,
        weights=dict(weight_bytes),
        process=process_bytes,
        activations=per_sample * batch_size * activation_bytes,
        # fp32 vectors, their gradient and the optimizer's moments
        optimizer_state=trainable_params * 4 * (2 + optimizer_states_per_param),
        gradient_checkpointing=gradient_checkpointing,
        largest_batch=f"batch {batch_size} of {latent_hw[1] * 8}x{latent_hw[0] * 8}",
    )


# --- reading a run (not pure) -------------------------------------------------------------------------------------


def weight_bytes_by_dtype(modules) -> dict[str, int]:
    """Bytes of every parameter and buffer of `modules` (None skipped), by dtype name."""
    out: dict[str, int] = {}
    for module in modules:
        if module is None:
            continue
        for tensor in [*module.parameters(), *module.buffers()]:
            name = str(tensor.dtype).removeprefix("torch.")
            out[name] = out.get(name, 0) + tensor.numel() * tensor.element_size()
    return out


def current_rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unknown)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def measured_peak_bytes(device: torch.device) -> int:
    """The peak the run really used: `torch.cuda.max_memory_allocated` on CUDA, the process's peak RSS elsewhere."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """This process's own peak RSS.

    Linux keeps ru_maxrss across fork and exec, so a run started by a large parent (pytest, `accelerate launch`)
    would report the parent's peak; /proc/self/status VmHWM belongs to this program's memory alone.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if platform.system() == "Darwin" else peak * 1024)


def largest_batch(group) -> tuple[tuple[int, int], int]:
    """((latent height, latent width), batch size) of the dataset's largest bucket batch by pixels."""
    return largest_pass([group])


def largest_pass(groups: list) -> tuple[tuple[int, int], int]:
    """((latent height, latent width), samples) of the largest forward pass when the groups' batches of one resolution
    run together: several concepts in lockstep, one group per concept (one group: its largest bucket batch)."""
    samples: dict[tuple[int, int], int] = {}
    for group in groups:
        own: dict[tuple[int, int], int] = {}
        for part in group.parts:
            for bucket, items in part.buckets.items():
                own[bucket] = max(own.get(bucket, 0), min(part.batch_size, len(items)))
        for bucket, batch in own.items():
            samples[bucket] = samples.get(bucket, 0) + batch
    best, best_key = ((8, 8), 1), 0
    for (width, height), batch in samples.items():
        if width * height * batch > best_key:
            best_key, best = width * height * batch, ((height // 8, width // 8), batch)
    return best


def estimate_for_run(models, tokens, group, device: torch.device, weight_bytes: dict[str, int], *, gradient_checkpointing: bool,
                     activation_dtype: torch.dtype, max_token_length: int | None, optimizer, pass_groups: list | None = None) -> MemoryEstimate:
    """The estimate for a loaded run: on a CPU the process part is the RSS now minus the weights it holds now.

    `pass_groups`: groups whose same-resolution batches share one forward pass (several concepts in lockstep)."""
    latent_hw, batch = largest_pass(pass_groups) if pass_groups else largest_batch(group)
    chunks = max(1, (max_token_length or 75) // 75)
    encoders = [TextEncoderShape(te.config.hidden_size, te.config.num_hidden_layers, 77 * chunks) for te in models.text_encoders]
    process = 0
    if device.type != "cuda":
        held = weight_bytes_by_dtype([models.unet, *models.text_encoders, models.vae])
        process = max(0, current_rss_bytes() - sum(held.values()))
    states = 2 if any(len(s) >= 2 for s in optimizer.state.values()) or "Adam" in type(optimizer).__name__ else 1
    return estimate_peak_memory(
        device=str(device),
        weight_bytes=weight_bytes,
        unet=UNetShape.from_config(models.unet.config),
        text_encoders=encoders,
        latent_hw=latent_hw,
        batch_size=batch,
        activation_bytes=torch.tensor([], dtype=activation_dtype).element_size(),
        gradient_checkpointing=gradient_checkpointing,
        trainable_params=sum(p.numel() for p in tokens.parameters()),
        optimizer_states_per_param=states,
        process_bytes=process,
    )
