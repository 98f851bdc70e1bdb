"""One reader for every embedding layout in circulation: `read_embedding(path) -> EmbeddingFile`.

The container is found from the file's first bytes, not its extension (a `.bin` may be safetensors):
safetensors, a torch pickle (zip or legacy, read without running code: see safe_pickle), or an A1111
PNG/WebP embedding image. The decoded mapping's keys then say the layout (see formats.recognize).

A diffusers SDXL embedding is two files, `X.safetensors` (CLIP-L) and `X_2.safetensors` (CLIP-G), or
`learned_embeds[...]` and `learned_embeds_2[...]`. Users point at the first; its partner is found beside it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from library.embeddings.formats import (
    CLIP_G,
    CLIP_L,
    DIFFUSERS,
    DIFFUSERS_SDXL_PAIR,
    SINGLE,
    EmbeddingFile,
    Recognized,
    recognize,
)
from library.embeddings.images import read_embedding_image
from library.embeddings.safe_pickle import load_torch_file
from library.errors import UserError

logger = logging.getLogger(__name__)

_DIFFUSERS_STEM = "learned_embeds"
# safetensors metadata keys that carry the token and step (ours, written by writer.py and the trainer)
TOKEN_KEYS = ("ti_token_string", "modelspec.trigger_phrase")
STEP_KEY = "ti_step"


def read_embedding(path: str | Path, *, quiet: bool = False) -> EmbeddingFile:
    """Read an embedding file of any supported layout; refuses others with a UserError that says why.

    Warnings (non-finite values, ignored keys, ...) are logged unless `quiet`, and kept in `.warnings`.
    """
    path = Path(path)
    _check_is_file(path)
    emb = _read_one(path)
    if emb.layout == DIFFUSERS:
        first = pair_first_half(path)
        if first is not None and first.is_file() and _is_pair(_read_one(first), emb):
            raise UserError(
                f"{path}: is the CLIP-G half of a diffusers SDXL pair; pass the first file {first} "
                "(its _2 partner is read with it)"
            )
        partner = pair_partner(path)
        if partner.is_file():
            other = _read_one(partner)
            if _is_pair(emb, other):
                emb = _join_pair(emb, other)
    _check_finite(emb)
    if not quiet:
        for warning in emb.warnings:
            logger.warning("%s: %s", path, warning)
    return emb


def pair_partner(path: Path) -> Path:
    """The `_2` file beside `path`: X.ext -> X_2.ext, learned_embeds-steps-500.ext -> learned_embeds_2-steps-500.ext."""
    stem = path.stem
    if stem.startswith(_DIFFUSERS_STEM) and not stem.startswith(_DIFFUSERS_STEM + "_2"):
        return path.with_name(f"{_DIFFUSERS_STEM}_2{stem[len(_DIFFUSERS_STEM):]}{path.suffix}")
    return path.with_name(f"{stem}_2{path.suffix}")


def pair_first_half(path: Path) -> Path | None:
    """For a `_2` file, the first file of its pair (which may not exist); None for other names."""
    stem = path.stem
    if stem.startswith(_DIFFUSERS_STEM + "_2"):
        return path.with_name(f"{_DIFFUSERS_STEM}{stem[len(_DIFFUSERS_STEM) + 2:]}{path.suffix}")
    if stem.endswith("_2") and len(stem) > 2:
        return path.with_name(f"{stem[:-2]}{path.suffix}")
    return None


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        inside = [p.name for p in sorted(path.iterdir()) if p.suffix in (".safetensors", ".bin", ".pt")][:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise UserError(f"{path}: is a folder; pass the embedding file itself{hint}")
    if not path.is_file():
        raise UserError(f"{path}: no such embedding file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: is empty (0 bytes)")


def _read_one(path: Path) -> EmbeddingFile:
    source = str(path)
    container = sniff_container(path)
    metadata: dict[str, str] = {}
    if container == "safetensors":
        data, metadata = _load_safetensors(path, source)
    elif container == "torch-pickle":
        data = load_torch_file(path, source)
    else:
        data, container = read_embedding_image(path, source)
    found: Recognized = recognize(data, source)
    metadata = {**metadata, **found.extras}
    token = found.token or next((metadata[k] for k in TOKEN_KEYS if metadata.get(k)), None)
    step = found.step
    if step is None and metadata.get(STEP_KEY, "").isdigit():
        step = int(metadata[STEP_KEY])
    return EmbeddingFile(
        path=path,
        vectors=found.vectors,
        layout=found.layout,
        container=container,
        token=token,
        step=step,
        metadata=metadata,
        warnings=list(found.warnings),
    )


def sniff_container(path: Path) -> str:
    """"safetensors", "torch-pickle" or "image", from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"\x89PNG\r\n\x1a\n") or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    # safetensors: a little-endian u64 header length, then the JSON header (its length's first byte may be 0x80)
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30):
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip, or a legacy pickle (protocol 2+)
        return "torch-pickle"
    raise UserError(
        f"{path}: not an embedding file: it is neither safetensors, a torch pickle (.pt/.bin/.ckpt) nor a PNG/WebP "
        "embedding image"
    )


def _load_safetensors(path: Path, source: str) -> tuple[dict, dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            data = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{source}: cannot be read as safetensors; it is truncated or corrupt ({err})") from None
    return data, metadata


def _is_pair(first: EmbeddingFile, second: EmbeddingFile) -> bool:
    # two {token: vector} files with the same count and different widths (CLIP-L, CLIP-G); two files of one
    # width beside each other are two versions of one embedding, not a pair
    if first.layout != DIFFUSERS or second.layout != DIFFUSERS:
        return False
    l, g = first.vectors[SINGLE], second.vectors[SINGLE]
    return l.shape[0] == g.shape[0] and l.shape[1] != g.shape[1]


def _join_pair(first: EmbeddingFile, second: EmbeddingFile) -> EmbeddingFile:
    l, g = first.vectors[SINGLE], second.vectors[SINGLE]
    warnings = first.warnings + second.warnings
    if second.token != first.token:
        warnings.append(f"the pair's tokens differ ({first.token!r} and {second.token!r}); the first is used")
    return EmbeddingFile(
        path=first.path,
        vectors={CLIP_L: l, CLIP_G: g},
        layout=DIFFUSERS_SDXL_PAIR,
        container=first.container,
        token=first.token,
        step=first.step if first.step is not None else second.step,
        metadata={**second.metadata, **first.metadata},
        warnings=warnings,
        partner=second.path,
    )


def _check_finite(emb: EmbeddingFile) -> None:
    for slot, tensor in emb.vectors.items():
        values = tensor.float()
        nan, inf = int(torch.isnan(values).sum()), int(torch.isinf(values).sum())
        if nan or inf:
            emb.warnings.append(f"{slot} holds {nan} NaN and {inf} infinite value(s); prompts using it will produce broken images")
