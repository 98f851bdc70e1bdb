"""AUTOMATIC1111's embedding images: a PNG (or lossless WebP) that carries the embedding.

A1111 writes the same dict as its .pt files (string_to_param, name, step, ...), JSON-encoded with every tensor
as {"TORCHTENSOR": nested lists}, in two places:

- a PNG text chunk `sd-ti-embedding` holding that JSON, base64-encoded;
- the pixels: the zlib-compressed JSON split into low and high nibbles, each XORed with a fixed LCG key
  stream and drawn as a block left and right of the picture, separated from it by a black column.

Both are decoded here with json/zlib/numpy only; nothing in the file is executed.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from pathlib import Path

import numpy as np
import torch

from library.errors import UserError

TEXT_CHUNK = "sd-ti-embedding"
MAX_PAYLOAD_BYTES = 256 << 20  # far above any real embedding; stops a zlib bomb


def read_embedding_image(path: Path, source: str | None = None) -> tuple[dict, str]:
    """The embedding dict inside an A1111 embedding image and where it was: "png-text-chunk" or "image-pixels"."""
    from PIL import Image, UnidentifiedImageError

    source = source or str(path)
    try:
        with Image.open(path) as image:
            chunks = getattr(image, "text", None) or {}
            if TEXT_CHUNK in chunks:
                return _decode_text_chunk(chunks[TEXT_CHUNK], source), "png-text-chunk"
            image.load()
            data = extract_pixel_payload(image)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{source}: cannot be read as an image; it is truncated or corrupt ({err})") from None
    if data is None:
        raise UserError(
            f"{source}: an image without an embedding in it (no '{TEXT_CHUNK}' text chunk, no embedding data in its "
            "pixels); it may be a preview image"
        )
    return _decode_json(data, source), "image-pixels"


def _decode_text_chunk(text: str, source: str) -> dict:
    try:
        raw = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as err:
        raise UserError(f"{source}: its '{TEXT_CHUNK}' text chunk is not base64 ({err})") from None
    return _decode_json(raw, source)


def _decode_json(raw: bytes, source: str) -> dict:
    try:
        return json.loads(raw, object_hook=_tensor_hook)
    except (ValueError, TypeError) as err:
        raise UserError(f"{source}: its embedding data is not valid JSON ({err})") from None


def _tensor_hook(obj: dict) -> object:
    if set(obj) == {"TORCHTENSOR"}:
        # A1111 writes float32 tensors as Python floats, so float32 restores them exactly
        return torch.tensor(obj["TORCHTENSOR"], dtype=torch.float32)
    return obj


def lcg_key_stream(n: int) -> np.ndarray:
    """A1111's key stream: LCG (a=1664525, c=1013904223, m=2**32) from seed 0, each value mod 255."""
    out = np.empty(n, dtype=np.uint8)
    seed = 0
    for i in range(n):
        seed = (1664525 * seed + 1013904223) % 4294967296
        out[i] = seed % 255
    return out


def extract_pixel_payload(image) -> bytes | None:
    """The zlib-decompressed bytes hidden in the image's pixels, or None if it carries none."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    nibbles = _crop_black(pixels) & 0x0F
    if nibbles.size == 0:
        return None
    black_columns = np.flatnonzero(nibbles.sum(axis=(0, 2)) == 0)
    if len(black_columns) < 2:
        return None
    low = nibbles[:, : black_columns.min(), :].reshape(-1)
    high = nibbles[:, black_columns.max() + 1 :, :].reshape(-1)
    if low.size == 0 or low.size != high.size:
        return None
    key = lcg_key_stream(low.size) & 0x0F
    payload = (((high ^ key) << 4) | (low ^ key)).astype(np.uint8).tobytes()
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(payload, MAX_PAYLOAD_BYTES)
    except zlib.error:
        return None
    if inflater.unconsumed_tail or not inflater.eof:
        return None
    return data


def _crop_black(pixels: np.ndarray) -> np.ndarray:
    # the bounding box of pixels that are non-zero in every channel, as A1111 crops before reading
    lit = (pixels > 0).all(axis=2)
    columns, rows = lit.any(axis=0), lit.any(axis=1)
    if not columns.any():
        return pixels[:0, :0]
    c0, c1 = columns.argmax(), len(columns) - columns[::-1].argmax()
    r0, r1 = rows.argmax(), len(rows) - rows[::-1].argmax()
    return pixels[r0:r1, c0:c1]


# --- writing -------------------------------------------------------------------------------------------------


def _tensor_default(obj: object) -> object:
    if isinstance(obj, torch.Tensor):
        # float32 -> Python float is exact, and JSON writes the shortest repr that reads back to the same double
        return {"TORCHTENSOR": obj.detach().cpu().float().numpy().tolist()}
    raise TypeError(f"cannot store {type(obj).__name__} in an embedding image")


def encode_text_chunk(data: dict) -> str:
    """The `sd-ti-embedding` chunk text for an embedding dict: base64 of its JSON, tensors as TORCHTENSOR lists."""
    return base64.b64encode(json.dumps(data, default=_tensor_default).encode()).decode("ascii")


def vectors_picture(vectors: torch.Tensor, size: int = 256):
    """A stand-in picture when no sample image is at hand: the vectors' magnitudes as grey rows."""
    from PIL import Image

    values = vectors.detach().float().abs().cpu().numpy()
    scaled = (values / (values.max() or 1.0) * 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").resize((size, size), Image.NEAREST).convert("RGB")


def write_embedding_image(path: Path, data: dict, picture=None) -> Path:
    """Write `picture` (PIL image; a vectors picture when None) as a PNG carrying `data` in A1111's text chunk.

    AUTOMATIC1111 also hides the data in extra pixel blocks; the text chunk alone is what its loader reads first,
    and it keeps the picture itself unchanged."""
    from PIL.PngImagePlugin import PngInfo

    from library.atomic import atomic_path

    if picture is None:
        vectors = next(iter(data["string_to_param"].values())) if "string_to_param" in data else next(
            v for v in data.values() if isinstance(v, torch.Tensor))
        picture = vectors_picture(vectors)
    info = PngInfo()
    info.add_text(TEXT_CHUNK, encode_text_chunk(data))
    path = Path(path)
    with atomic_path(path) as tmp:
        picture.convert("RGB").save(tmp, format="PNG", pnginfo=info)
    return path
