"""Writing embedding files in the layouts other tools read. Every write is atomic (temp file + rename).

| format      | SD 1.x / 2.x (slot emb_params)                | SDXL (slots clip_l, clip_g)                   |
|-------------|-----------------------------------------------|-----------------------------------------------|
| safetensors | {'emb_params': N x dim} + string metadata     | {'clip_l': N x 768, 'clip_g': N x 1280} + metadata |
| a1111-pt    | A1111's dict (string_to_param, name, step...) | {'clip_l', 'clip_g'} (A1111 needs tensors only) |
| diffusers   | {token: N x dim}                              | the pair X.safetensors + X_2.safetensors       |
| sdxl-pair   | (refused)                                     | the same pair                                 |
| a1111-png   | a PNG with a1111-pt's dict in A1111's `sd-ti-embedding` text chunk | the same, with {'clip_l', 'clip_g'} |

`pt` and `ckpt` (sd-scripts' --save_model_as values) are a1111-pt. A torch pickle holds only dicts, tensors,
strings, ints and None, so `torch.load(weights_only=True)` reads it.

Torch pickles are written in torch's legacy (pre-1.6, non-zip) format. torch 2.x's zip format adds entries
(`.format_version`, `.storage_alignment`, `byteorder`, `.data/serialization_id`) that AUTOMATIC1111's safe
unpickler refuses as "bad file inside ... may be malicious"; for a non-zip file it instead checks the five
pickles of the legacy format with its restricted unpickler, which our plain dicts and tensors pass. torch.load
(weights_only or not), ComfyUI, diffusers and picklescan all read the legacy format.
"""

from __future__ import annotations

from pathlib import Path

import torch

from library.atomic import atomic_path
from library.embeddings.formats import SD_SLOTS, SDXL_SLOTS, SINGLE
from library.embeddings.reader import STEP_KEY, TOKEN_KEYS, pair_partner
from library.errors import UserError

FORMATS = ("safetensors", "a1111-pt", "diffusers", "sdxl-pair", "a1111-png")
_ALIASES = {"pt": "a1111-pt", "ckpt": "a1111-pt"}
_SUFFIX_FORMATS = {".safetensors": "safetensors", ".pt": "a1111-pt", ".ckpt": "a1111-pt", ".bin": "diffusers", ".png": "a1111-png"}
DTYPES = {
    "float": torch.float32,
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
A1111_STAR_TOKEN_ID = 265  # the CLIP id of "*", which A1111 stores in string_to_token and never reads


def save_embedding(
    path: str | Path,
    vectors_by_slot: dict[str, torch.Tensor],
    *,
    token: str | None = None,
    step: int | None = None,
    metadata: dict[str, str] | None = None,
    format: str | None = None,
    dtype: str | torch.dtype | None = None,
    picture=None,
) -> list[Path]:
    """Write an embedding (format from FORMATS, or from the suffix when None); returns the file(s) written.

    `token` is stored as the file's own name (A1111 `name`, diffusers key, safetensors `ti_token_string`);
    `dtype` ("fp16", "bf16", "float", ...) casts the vectors, None keeps theirs. `picture` (a PIL image) is the
    image of an a1111-png file (default: a picture of the vectors).
    """
    path = Path(path)
    fmt = _resolve_format(format, path)
    vectors = _prepared(vectors_by_slot, dtype)
    sdxl = tuple(vectors) == SDXL_SLOTS
    metadata = dict(metadata or {})
    if fmt == "safetensors":
        _write_safetensors(path, vectors, _with_token_and_step(metadata, token, step))
        return [path]
    if fmt == "a1111-png":
        from library.embeddings.images import write_embedding_image

        data = dict(vectors) if sdxl else _a1111_dict(vectors[SINGLE], token or path.stem, step, metadata)
        return [write_embedding_image(path, data, picture)]
    if fmt == "a1111-pt":
        _write_torch(path, dict(vectors) if sdxl else _a1111_dict(vectors[SINGLE], token or path.stem, step, metadata))
        return [path]
    if fmt == "sdxl-pair" and not sdxl:
        raise UserError(f"{path}: an SDXL pair needs clip_l and clip_g vectors; this embedding has one text encoder's (emb_params)")
    key = token or path.stem
    if not sdxl:
        _write_diffusers(path, {key: vectors[SINGLE]}, metadata, step)
        return [path]
    partner = pair_partner(path)
    _write_diffusers(path, {key: vectors["clip_l"]}, metadata, step)
    _write_diffusers(partner, {key: vectors["clip_g"]}, metadata, step)
    return [path, partner]


def default_suffix(format: str) -> str:
    """The file extension a format is written with by default."""
    fmt = _ALIASES.get(format, format)
    return {"a1111-pt": ".pt", "a1111-png": ".png"}.get(fmt, ".safetensors")


def _resolve_format(format: str | None, path: Path) -> str:
    if format is None:
        if path.suffix.lower() not in _SUFFIX_FORMATS:
            raise UserError(f"{path}: cannot tell the embedding format from the extension; use .safetensors, .pt, .ckpt or .bin")
        return _SUFFIX_FORMATS[path.suffix.lower()]
    fmt = _ALIASES.get(format, format)
    if fmt not in FORMATS:
        raise UserError(f"unknown embedding format {format!r}; expected one of {', '.join(FORMATS + tuple(_ALIASES))}")
    return fmt


def _prepared(vectors_by_slot: dict[str, torch.Tensor], dtype: str | torch.dtype | None) -> dict[str, torch.Tensor]:
    slots = tuple(vectors_by_slot)
    if set(slots) not in (set(SD_SLOTS), set(SDXL_SLOTS)):
        raise ValueError(f"vectors_by_slot has slots {slots}; expected {SD_SLOTS} or {SDXL_SLOTS}")
    order = SD_SLOTS if len(slots) == 1 else SDXL_SLOTS
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise UserError(f"unknown save precision {dtype!r}; expected one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    out = {}
    for slot in order:
        tensor = vectors_by_slot[slot].detach().cpu()
        if tensor.dim() != 2:
            raise ValueError(f"{slot} vectors must be N x dim, got shape {tuple(tensor.shape)}")
        # clone: safetensors refuses tensors that share storage, and the file must not alias live parameters
        out[slot] = (tensor.to(dtype) if dtype is not None else tensor).contiguous().clone()
    if len({t.shape[0] for t in out.values()}) != 1:
        raise ValueError(f"the slots hold different vector counts: {[tuple(t.shape) for t in out.values()]}")
    return out


def _with_token_and_step(metadata: dict[str, str], token: str | None, step: int | None) -> dict[str, str]:
    out = {str(k): str(v) for k, v in metadata.items()}
    if token:
        out[TOKEN_KEYS[0]] = token
    if step is not None:
        out[STEP_KEY] = str(step)
    return out


def _a1111_dict(vectors: torch.Tensor, name: str, step: int | None, metadata: dict[str, str]) -> dict:
    base_hash = metadata.get("sd_checkpoint") or (metadata.get("ti_base_model_hash") or "")[:10] or None
    base_name = metadata.get("sd_checkpoint_name") or (Path(metadata["ti_base_model"]).stem if metadata.get("ti_base_model") else None)
    return {
        "string_to_token": {"*": A1111_STAR_TOKEN_ID},
        "string_to_param": {"*": vectors},
        "name": name,
        "step": step,
        "sd_checkpoint": base_hash,
        "sd_checkpoint_name": base_name,
    }


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata or None)


def _write_torch(path: Path, obj: dict) -> None:
    """A legacy-format torch pickle (see the module docstring): no zip, so no inner folder or extra entries."""
    with atomic_path(path) as tmp:
        torch.save(obj, str(tmp), _use_new_zipfile_serialization=False)


def _write_diffusers(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], step: int | None) -> None:
    if path.suffix.lower() in (".bin", ".pt"):
        _write_torch(path, tensors)  # learned_embeds.bin: a bare {token: tensor} pickle
    else:
        # diffusers writes {"format": "pt"}; the token is the key, so only the step is added
        _write_safetensors(path, tensors, _with_token_and_step({"format": "pt", **metadata}, None, step))
