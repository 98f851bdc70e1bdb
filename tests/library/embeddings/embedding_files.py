"""Builders of embedding files in the layouts other tools write, for the embedding tests."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import numpy as np
import torch

from library.embeddings.images import TEXT_CHUNK, lcg_key_stream


def a1111_dict(vectors: torch.Tensor, name: str = "mychar", step: int = 100) -> dict:
    """The dict AUTOMATIC1111 saves for a trained embedding."""
    return {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vectors},
        "name": name,
        "step": step,
        "sd_checkpoint": "5d2f8777af",
        "sd_checkpoint_name": "v1-5-pruned",
    }


def _json_of(data: dict) -> str:
    # A1111's EmbeddingEncoder: tensors become {"TORCHTENSOR": nested lists}
    return json.dumps(data, default=lambda t: {"TORCHTENSOR": t.tolist()})


def write_png_text_chunk(path: Path, data: dict) -> Path:
    """A PNG with the embedding in an `sd-ti-embedding` text chunk, as A1111's training writes it."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(TEXT_CHUNK, base64.b64encode(_json_of(data).encode()).decode())
    Image.new("RGB", (32, 32), (200, 120, 60)).save(path, "PNG", pnginfo=info)
    return path


def write_pixel_image(path: Path, data: dict, fmt: str = "PNG") -> Path:
    """An image with the embedding hidden in its pixels, laid out as A1111's insert_image_data_embed does.

    A1111 also draws dots into the high nibbles; a reader ignores them, so a constant 0x80 stands in for them.
    """
    from PIL import Image

    height = 24
    payload = np.frombuffer(zlib.compress(_json_of(data).encode(), 9), np.uint8)
    per_block = height * 3
    size = -(-len(payload) // per_block) * per_block
    key = lcg_key_stream(size) & 0x0F
    low = ((np.resize(payload & 0x0F, size) ^ key) | 0x80).astype(np.uint8).reshape(height, -1, 3)
    high = ((np.resize(payload >> 4, size) ^ key) | 0x80).astype(np.uint8).reshape(height, -1, 3)
    picture = Image.new("RGB", (16, height), (200, 120, 60))
    width = low.shape[1] + 1 + picture.size[0] + 1 + high.shape[1]
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(Image.fromarray(low, "RGB"), (0, 0))
    canvas.paste(picture, (low.shape[1] + 1, 0))
    canvas.paste(Image.fromarray(high, "RGB"), (low.shape[1] + 1 + picture.size[0] + 1, 0))
    canvas.save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return path
