"""Loading a diffusers UNet / VAE folder with one copy of the weights in memory, in the dtype asked for.

diffusers' from_pretrained reads a whole `.safetensors` file into memory in its stored dtype before copying it
into the model: loading SD1.5's fp32 UNet in bf16 peaks at the fp32 file plus the bf16 model (about 5 GiB for a
1.7 GiB result). Here the model is built on the meta device and each tensor is read with plain file reads (no
mmap, whose touched pages would count as resident) and converted on its own, so the peak is the converted
model plus one tensor. For files already in the dtype asked for, and anything unusual (sharded or legacy
weights, unexpected keys), it returns None and the caller uses from_pretrained.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from library.errors import UserError

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


class IncompleteFile(UserError):
    """A weights file shorter than its header says, or without tensors the model needs (a cut-off download)."""


def read_header(f, source: str | None = None) -> tuple[dict, int]:
    """(the tensors' header entries, offset of the data) of an open .safetensors file, checked against its length.

    A file cut short (an interrupted download or copy) is refused here, naming it: reading on would fill the
    missing tensors with zeros and train silently on a broken model.
    """
    source = source or getattr(f, "name", "the file")
    size = os.fstat(f.fileno()).st_size
    raw = f.read(8)
    if len(raw) < 8:
        raise IncompleteFile(f"{source}: not a readable .safetensors file ({size} bytes, shorter than its header); download or copy it again")
    (header_len,) = struct.unpack("<Q", raw)
    if 8 + header_len > size:
        raise IncompleteFile(f"{source}: not a readable .safetensors file: its header alone would be {8 + header_len} bytes but the file has "
                             f"{size}; it is cut short (download or copy it again) or not a safetensors file")
    try:
        header = json.loads(f.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IncompleteFile(f"{source}: not a readable .safetensors file (its header is not JSON: {err})") from None
    header.pop("__metadata__", None)
    base = 8 + header_len
    end = max((info["data_offsets"][1] for info in header.values()), default=0)
    if base + end > size:
        short = [name for name, info in header.items() if base + info["data_offsets"][1] > size]
        raise IncompleteFile(
            f"{source}: the file is cut short: {size} of {base + end} bytes, {len(short)} of {len(header)} tensors missing "
            f"(e.g. {sorted(short)[0]}); download or copy it again"
        )
    return header, base


def check_safetensors_complete(path: str | Path) -> None:
    """Raise IncompleteFile if a .safetensors file is shorter than its header says (reads the header only)."""
    with open(path, "rb") as f:
        read_header(f, str(path))


def stored_float_dtypes(path: str | Path) -> set[torch.dtype]:
    with open(path, "rb") as f:
        header, _ = read_header(f)
    return {_DTYPES[info["dtype"]] for info in header.values() if _DTYPES[info["dtype"]].is_floating_point}


def read_safetensors(path: str | Path, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A .safetensors file's tensors, floating ones converted to `dtype` one at a time as they are read."""
    out = {}
    with open(path, "rb") as f:
        header, base = read_header(f)
        entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
        for name, info in entries:
            start, end = info["data_offsets"]
            stored = _DTYPES[info["dtype"]]
            buffer = bytearray(end - start)
            f.seek(base + start)
            if f.readinto(buffer) != len(buffer):  # the file shrank after its header was checked
                raise IncompleteFile(f"{path}: the file is cut short inside tensor {name}; download or copy it again")
            tensor = torch.frombuffer(buffer, dtype=stored) if buffer else torch.empty(0, dtype=stored)
            tensor = tensor.reshape(info["shape"])
            if dtype is not None and tensor.is_floating_point() and stored != dtype:
                tensor = tensor.to(dtype)  # a converted copy; the stored bytes are freed with `buffer`
            out[name] = tensor  # unconverted tensors share `buffer` (no copy)
            del buffer
    return out


def load_diffusers_model_low_memory(cls, folder: Path, dtype: torch.dtype):
    """`cls` (a diffusers ModelMixin) from `folder`/config.json and one diffusion_pytorch_model.safetensors, or None."""
    weights = folder / "diffusion_pytorch_model.safetensors"
    if not weights.is_file() or not (folder / "config.json").is_file():
        return None
    if stored_float_dtypes(weights) <= {dtype}:
        return None  # no conversion: from_pretrained holds a single copy already
    with torch.device("meta"):
        model = cls.from_config(cls.load_config(str(folder)))
    if any(True for _ in model.buffers()):
        return None  # buffers would need their own initialisation
    state = read_safetensors(weights, dtype)
    expected = set(model.state_dict())
    if set(state) != expected:
        missing = expected - set(state)
        if missing and not (set(state) - expected):  # not a renaming: the tensors are simply absent
            raise IncompleteFile(f"{weights}: {len(missing)} of the model's {len(expected)} tensors are missing "
                                 f"(e.g. {sorted(missing)[0]}); the file is incomplete")
        return None  # legacy key names and the like: from_pretrained knows how to convert them
    model.load_state_dict(state, strict=True, assign=True)
    model.register_to_config(_name_or_path=str(folder))  # as from_pretrained records it
    if any(p.is_meta for p in model.parameters()):
        return None
    return model.eval()
