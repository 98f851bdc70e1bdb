"""The human-readable description of an embedding file that `tools/embedding.py inspect` prints."""

from __future__ import annotations

import torch

from library.embeddings.formats import LAYOUTS, SINGLE, EmbeddingFile, describe_dims
from library.embeddings.vocab import norm_summary

_FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
_MAX_VALUE_CHARS = 160


def fits_text(emb: EmbeddingFile) -> str:
    """Which published model family the widths fit, in words."""
    families = emb.fitting_families()
    if families == ["sd1"]:
        return "SD 1.x (768); on SDXL it applies to CLIP-L only"
    if families:
        return f"{_FAMILY_NAMES[families[0]]} ({describe_dims(emb.dims)})"
    return f"no published SD 1.x / SD 2.x / SDXL model ({describe_dims(emb.dims)}); a custom or test model of these widths"


def describe(emb: EmbeddingFile, vocab_tables: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Lines describing the file: layout, trigger word, shapes, fit, norms, non-finite values, metadata."""
    lines = [str(emb.path) + (f" + {emb.partner.name}" if emb.partner else "")]
    field = lambda name, value: lines.append(f"  {name + ':':<14}{value}")  # noqa: E731
    field("layout", f"{emb.layout} - {LAYOUTS[emb.layout]} ({emb.container})")
    own = f"'{emb.token}'" if emb.token else "none"
    field("trigger", f"{emb.trigger}   (the file name; the file's own name: {own})")
    field("vectors", emb.num_vectors)
    for slot, tensor in emb.vectors.items():
        label = "dims" if slot == SINGLE else slot
        field(label, f"{tensor.shape[0]} x {tensor.shape[1]} {str(tensor.dtype).removeprefix('torch.')}")
    field("fits", fits_text(emb))
    field("step", emb.step if emb.step is not None else "unknown")
    for slot, tensor in emb.vectors.items():
        norms = tensor.float().norm(dim=-1)
        field("norms" if slot == SINGLE else f"norms {slot}", " ".join(f"{n:.3f}" for n in norms.tolist()))
        if vocab_tables and slot in vocab_tables:
            field("vocab" if slot == SINGLE else f"vocab {slot}", _versus_vocab(norms, vocab_tables[slot], tensor.shape[-1]))
    field("non-finite", _non_finite_text(emb))
    if emb.metadata:
        field("metadata", "")
        for key, value in emb.metadata.items():
            value = str(value)
            shown = value if len(value) <= _MAX_VALUE_CHARS else value[:_MAX_VALUE_CHARS] + f"... ({len(value)} chars)"
            lines.append(f"    {key} = {shown}")
    else:
        field("metadata", "none")
    for warning in emb.warnings:
        field("warning", warning)
    return lines


def _versus_vocab(norms: torch.Tensor, table: torch.Tensor, dim: int) -> str:
    if table.shape[-1] != dim:
        return f"model vocabulary is {table.shape[-1]} wide; this embedding ({dim}) does not fit it"
    stats = norm_summary(table)
    ratios = norms / stats["mean"]
    return (
        f"model vocabulary norms: mean {stats['mean']:.3f}, median {stats['median']:.3f}, p99 {stats['p99']:.3f}; "
        f"these vectors are {ratios.min().item():.2f}x to {ratios.max().item():.2f}x the mean"
    )


def _non_finite_text(emb: EmbeddingFile) -> str:
    parts = []
    for slot, tensor in emb.vectors.items():
        values = tensor.float()
        nan, inf = int(torch.isnan(values).sum()), int(torch.isinf(values).sum())
        if nan or inf:
            parts.append(f"{slot}: {nan} NaN, {inf} Inf")
    return "; ".join(parts) if parts else "none"
