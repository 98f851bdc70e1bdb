"""Makers of bad files an adversarial user (or a broken download, a full disk, a malicious upload) produces."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import torch

# Where a malicious pickle would leave its mark if it ever ran; tests check it never appears.
PWNED = "pwned_marker_dir"


class RunsCode:
    """A pickle of this object calls os.makedirs(marker) when unpickled with full pickle."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def malicious_pickle(path: Path, marker: Path, payload: dict | None = None) -> Path:
    """A torch pickle holding tensors and one object that would run code: weights_only loading must refuse it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**(payload or {"w": torch.zeros(2)}), "evil": RunsCode(marker)}, path)
    return path


def cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A small, well-formed PNG whose header claims width x height pixels (Pillow refuses to decode it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)  # far too little data, but the scan must not need to decode to know
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b""))
    return path


def non_finite_embedding(path: Path, value: float, shape: tuple[int, int] = (2, 32)) -> Path:
    from library.embeddings import save_embedding

    vectors = torch.randn(*shape)
    vectors[0, 0] = value
    save_embedding(path, {"emb_params": vectors}, token="toyxstar")
    return path
