"""Reading single-file checkpoints (`.safetensors`, `.ckpt`) safely, with errors the user can act on."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from library.embeddings.safe_pickle import is_refused_pickle, refusal
from library.errors import UserError
from library.models.original_format import EMBEDDED_CONFIG_KEY

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SINGLE_FILE_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
_CONFIG_FILES = {"scheduler": "scheduler_config.json"}  # every other component: config.json


@dataclass
class Checkpoint:
    """A checkpoint's tensors by key, and its string metadata (safetensors header or .ckpt top-level strings)."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)


def read_checkpoint(path: str | Path, flag: str = "--pretrained_model_name_or_path", *, mmap: bool = True) -> Checkpoint:
    """Load all tensors of a single-file checkpoint on the CPU. Pickles are read with weights_only=True.

    `mmap=False` (--disable_mmap_load_safetensors) reads a .safetensors file with plain reads instead of mapping it,
    which is faster on file systems where page faults are slow (network drives, WSL's Windows drives)."""
    path = Path(path)
    where = f"{flag} {path}"
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path, where) if mmap else _read_safetensors_unmapped(path, where)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return _read_pickle(path, where)
    raise UserError(f"{where}: unsupported file type {path.suffix!r}; expected a .safetensors or .ckpt checkpoint "
                    "or a diffusers model directory")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header metadata without loading tensors ({} for other files or unreadable headers)."""
    if Path(path).suffix.lower() not in SAFETENSORS_SUFFIXES:
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:
        return {}


def _read_safetensors(path: Path, where: str) -> Checkpoint:
    from safetensors import safe_open

    from library.models.low_memory import IncompleteFile, check_safetensors_complete

    try:
        check_safetensors_complete(path)  # a cut-off download is named as such, not as an unreadable file
    except IncompleteFile as err:
        raise UserError(f"{flag_of(where)}{err}") from None

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            state_dict = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # SafetensorError has no stable import path across versions
        raise UserError(f"{where}: not a readable .safetensors file ({_short(err)}); it is damaged or incomplete "
                        "(download it again) or not a safetensors checkpoint") from err
    return Checkpoint(path, state_dict, metadata)


def _read_safetensors_unmapped(path: Path, where: str) -> Checkpoint:
    from library.models.low_memory import read_safetensors

    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            metadata = dict(json.loads(f.read(header_len)).get("__metadata__") or {})
        state_dict = read_safetensors(path)
    except Exception as err:
        raise UserError(f"{where}: not a readable .safetensors file ({_short(err)}); it is damaged or incomplete "
                        "(download it again) or not a safetensors checkpoint") from err
    return Checkpoint(path, state_dict, metadata)


def _read_pickle(path: Path, where: str) -> Checkpoint:
    try:
        # mmap keeps large zip-format checkpoints out of RAM until each tensor is used
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        if is_refused_pickle(err):
            raise UserError(refusal(where, err)) from None
        raise UserError(f"{where}: not a readable checkpoint ({_short(err)})") from None
    except Exception as err:
        raise UserError(f"{where}: not a readable checkpoint ({_short(err)}); it is damaged or incomplete "
                        "(download it again) or not a PyTorch checkpoint") from err
    metadata: dict[str, str] = {}
    # Lightning/LDM checkpoints wrap the weights: {"state_dict": {...}, "global_step": ..., ...}
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        metadata.update({k: v for k, v in obj.items() if isinstance(v, str)})
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(f"{where}: holds a {type(obj).__name__}, not a model state dict")
    state_dict = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return Checkpoint(path, state_dict, metadata)


def flag_of(where: str) -> str:
    """'--vae ' from '--vae path' (messages of the file checks already name the path)."""
    return where.split(" ", 1)[0] + " " if where.startswith("--") else ""


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


def write_embedded_config(metadata: dict[str, str], out_dir: Path) -> Path | None:
    """If the checkpoint carries its diffusers configs (see original_format), write them as a config directory."""
    text = metadata.get(EMBEDDED_CONFIG_KEY)
    if not text:
        return None
    try:
        configs = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"the checkpoint's embedded model config ({EMBEDDED_CONFIG_KEY}) is not valid JSON: {err}") from err
    for name in ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler"):
        if isinstance(configs.get(name), dict):
            (out_dir / name).mkdir(parents=True, exist_ok=True)
            (out_dir / name / _CONFIG_FILES.get(name, "config.json")).write_text(json.dumps(configs[name]))
    return out_dir
