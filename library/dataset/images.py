"""Image files: finding them, sizes from headers, decoding to RGB (+ alpha), resize/crop/augment for training.

Sizes are (width, height). Decoding honours EXIF orientation; header sizes do too (orientations 5-8 swap w/h).
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import imagesize
import numpy as np
import torch
from PIL import Image, ImageOps

from library.dataset.buckets import Size, crop_offsets, resize_to_cover

logger = logging.getLogger(__name__)

# Formats users keep training images in; anything else Pillow can open is added below.
_COMMON_EXTENSIONS = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif"}
# Pillow opens these but they are documents or containers, not training images.
_NOT_TRAINING_IMAGES = {".pdf", ".eps", ".ps", ".h5", ".hdf", ".fits", ".fit", ".grib", ".bufr", ".wmf", ".emf"}
_NOT_TRAINING_IMAGES |= {".mpg", ".mpeg"}  # video


def _pillow_extensions() -> frozenset[str]:
    Image.init()
    readable = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset((readable | _COMMON_EXTENSIONS) - _NOT_TRAINING_IMAGES)


IMAGE_EXTENSIONS = _pillow_extensions()

# resize_interpolation names (sd-scripts' plus PIL's hamming) -> PIL filter
INTERPOLATIONS = {
    "lanczos": Image.Resampling.LANCZOS,
    "lanczos4": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "linear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "cubic": Image.Resampling.BICUBIC,
    # PIL's box filter averages the covered source pixels when shrinking: OpenCV's INTER_AREA
    "area": Image.Resampling.BOX,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


class ImageError(Exception):
    """An image file that cannot be used; the message says why."""


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# ---------------------------------------------------------------------------------------------------------------
# headers


def read_image_size(path: str | Path) -> Size:
    """(width, height) as the image will be after EXIF rotation, from the header; decodes nothing."""
    try:
        w, h = imagesize.get(path, exif_rotation=True)
    except TypeError:  # imagesize < 2.0 has no exif_rotation
        w, h = -1, -1
    except Exception:  # a damaged header: let Pillow have a go and explain
        w, h = -1, -1
    if w > 0 and h > 0:
        return w, h
    return _pil_size(path)


def _pil_size(path: str | Path) -> Size:
    try:
        with Image.open(path) as img:  # lazy: reads the header only
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Exception as err:  # Pillow raises many types for bad files
        raise ImageError(f"not an image Pillow can read ({type(err).__name__}: {err})") from err
    if w <= 0 or h <= 0:
        raise ImageError("the header says the image has no pixels")
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def pixel_limit_problem(size: Size) -> Optional[str]:
    """A reason if a header claims more pixels than Pillow will ever decode (a decompression bomb), else None.

    Pillow refuses to decode images over twice Image.MAX_IMAGE_PIXELS (DecompressionBombError); finding that from
    the header at scan time keeps such a file from stopping a run part-way through an epoch.
    """
    if Image.MAX_IMAGE_PIXELS is None:  # the user lifted Pillow's limit on purpose
        return None
    limit = 2 * Image.MAX_IMAGE_PIXELS
    w, h = size
    if w * h > limit:
        return (f"the header says {w}x{h} ({w * h / 1e6:.0f} megapixels), over Pillow's decoding limit of "
                f"{limit / 1e6:.0f} megapixels; a decompression bomb or a corrupt header")
    return None


def truncation_problem(path: str | Path) -> Optional[str]:
    """A reason if the file is empty or cut short, else None.

    The file's last bytes are checked first (no decoding); only a file that looks cut short there (or carries
    data after its end marker, like phone "motion photos") is decoded to confirm.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(16)
        f.seek(max(0, size - 1024))
        tail = f.read()
    suspicious = None
    if head.startswith(b"\x89PNG"):
        if b"IEND" not in tail[-32:]:
            suspicious = "the PNG is truncated (it ends before its IEND chunk)"
    elif head.startswith(b"\xff\xd8"):
        if b"\xff\xd9" not in tail:
            suspicious = "the JPEG is truncated (it ends before its end-of-image marker)"
    elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        declared = int.from_bytes(head[4:8], "little") + 8
        if size < declared:
            return f"the WebP is truncated ({size} of {declared} bytes)"
    if suspicious is None:
        return None
    try:
        with Image.open(path) as img:
            img.load()
    except Exception:
        return suspicious
    return None


# ---------------------------------------------------------------------------------------------------------------
# decoding


@dataclass
class LoadedImage:
    rgb: Image.Image  # mode "RGB", EXIF orientation applied
    alpha: Optional[Image.Image]  # mode "L", or None when the file has no alpha

    @property
    def size(self) -> Size:
        return self.rgb.size


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    # Pillow's own I;16/I/F -> L conversion clips at 255 instead of scaling
    arr = np.asarray(img, dtype=np.float64)
    peak = float(arr.max()) if arr.size else 0.0
    if img.mode == "F" and peak <= 1.0:
        arr = arr * 255.0
    elif peak > 255:
        arr = arr / 257.0  # 16-bit range
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")


def to_rgb_and_alpha(img: Image.Image) -> LoadedImage:
    """RGB colour channels (not composited over a background) and the alpha channel if there is one."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return LoadedImage(_high_bit_depth_to_l(img).convert("RGB"), None)
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBa", "La", "PA"):
        img, mode = img.convert("RGBA"), "RGBA"
    if mode == "LA":
        return LoadedImage(img.getchannel("L").convert("RGB"), img.getchannel("A"))
    if mode == "RGBA":
        return LoadedImage(img.convert("RGB"), img.getchannel("A"))
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV
    return LoadedImage(img, None)


def load_image(path: str | Path) -> LoadedImage:
    """Decode an image file to RGB (+ alpha), EXIF orientation applied."""
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb_and_alpha(img)
    except Exception as err:
        raise ImageError(f"cannot decode {path}: {type(err).__name__}: {err}") from err


# ---------------------------------------------------------------------------------------------------------------
# transforms


def resolve_interpolation(name: Optional[str], source: Size, target: Size) -> Image.Resampling:
    """The PIL filter for `name`; by default area averaging when shrinking, Lanczos when enlarging (sd-scripts)."""
    if name is None:
        shrinking = source[0] >= target[0] and source[1] >= target[1]
        return INTERPOLATIONS["area" if shrinking else "lanczos"]
    try:
        return INTERPOLATIONS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown resize_interpolation {name!r}; expected one of {sorted(INTERPOLATIONS)}") from None


def resize(img: Image.Image, size: Size, interpolation: Optional[str] = None) -> Image.Image:
    if img.size == tuple(size):
        return img
    return img.resize(size, resolve_interpolation(interpolation, img.size, size))


def parse_face_info(path: str | Path) -> Optional[tuple[int, int, int, int]]:
    """Face centre and size (cx, cy, w, h) from a file name ending in `_CX_CY_W_H` (sd-scripts' face-crop tool)."""
    tokens = Path(path).stem.split("_")
    if len(tokens) < 5:
        return None
    try:
        cx, cy, fw, fh = (int(t) for t in tokens[-4:])
    except ValueError:
        return None
    return (cx, cy, fw, fh) if fw > 0 and fh > 0 else None


def face_crop_window(
    image_size: Size,
    face: tuple[int, int, int, int],
    target: Size,
    aug_range: tuple[float, float],
    random_crop: bool,
    rng: random.Random,
) -> tuple[Size, Size]:
    """(scaled size, (left, top)) for face_crop_aug_range: scale so the face is 1/range of the target's short
    side (random within the range), then centre the window on the face (sd-scripts' `crop_target`)."""
    width, height = image_size
    tw, th = target
    cx, cy, fw, fh = face
    face_size = max(fw, fh)
    short = min(tw, th)
    cover = max(th / height, tw / width)
    lo = max(cover, min(1.0, short / (face_size * aug_range[1])))
    hi = max(lo, min(1.0, short / (face_size * aug_range[0])))
    scale = lo if lo >= hi else rng.uniform(lo, hi)
    nw, nh = max(tw, int(width * scale + 0.5)), max(th, int(height * scale + 0.5))
    offsets = []
    for target_len, length, face_pos in ((tw, nw, int(cx * scale + 0.5)), (th, nh, int(cy * scale + 0.5))):
        p = face_pos - target_len // 2
        if random_crop:
            # keep some background: jitter around the face, more often near it
            span = max(length - face_pos, face_pos)
            p += rng.randint(0, span) + rng.randint(0, span) - span
        elif aug_range[0] != aug_range[1] and face_size > short // 10 and face_size >= 40:
            p += rng.randint(-face_size // 20, face_size // 20)
        offsets.append(max(0, min(p, length - target_len)))
    return (nw, nh), (offsets[0], offsets[1])


def color_augment(img: Image.Image, rng: random.Random) -> Image.Image:
    """sd-scripts' color_aug: one time in three, either a hue shift of up to 8/180 of the circle or a gamma of
    0.95-1.05 (applied to [0, 1] values, which is what a gamma means)."""
    if rng.random() > 0.33:
        return img
    if rng.random() > 0.5:
        shift = rng.uniform(-8, 8) / 180.0
        hsv = np.array(img.convert("HSV"))
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(shift * 256))) % 256).astype(np.uint8)
        return Image.fromarray(hsv, "HSV").convert("RGB")
    gamma = rng.uniform(0.95, 1.05)
    lut = [min(255, int(round(((i / 255.0) ** gamma) * 255.0))) for i in range(256)]
    return img.point(lut * 3)


@dataclass
class PreparedImage:
    """One training image at its bucket size, with the SDXL size/crop conditioning."""

    rgb: Image.Image  # bucket-sized RGB
    alpha: Optional[np.ndarray]  # (H, W) float32 loss weights in [0, 1] (alpha_mask and/or a mask image)
    original_size: Size  # (w, h) before resize
    resized: Size  # (w, h) after resize, before the crop
    crop_left_top: Size  # (left, top) of the crop in the resized image, mirrored when flipped
    flipped: bool


def size_conditioning_crop(original: Size, bucket: Size, flipped: bool) -> Size:
    """The (left, top) crop SDXL is conditioned on, computed as sd-scripts does (its `get_crop_ltrb`).

    sd-scripts does not pass the crop it applied: it fits the whole original inside the bucket (aspect kept) and
    takes the margins, floored: a 768x512 image in a 320x192 bucket gives left 16, top 0, where the pixels were
    cropped 10 rows from the top. SDXL embeddings trained here are used with models and sd-scripts-trained
    files conditioned that way, so this value is used, not the actual crop. Flipped, the left margin is
    measured from the right edge, as sd-scripts does.
    """
    bucket_w, bucket_h = bucket
    image_ar = original[0] / original[1]
    if bucket_w / bucket_h > image_ar:
        fitted_w, fitted_h = bucket_h * image_ar, bucket_h
    else:
        fitted_w, fitted_h = bucket_w, bucket_w / image_ar
    left = (bucket_w - fitted_w) // 2
    top = (bucket_h - fitted_h) // 2
    if flipped:
        left = bucket_w - (left + fitted_w)
    return int(left), int(top)


@dataclass(frozen=True)
class ImageTransform:
    """How one subset turns a file into a training image."""

    random_crop: bool = False
    flip_aug: bool = False
    color_aug: bool = False
    alpha_mask: bool = False
    interpolation: Optional[str] = None
    face_crop_aug_range: Optional[tuple[float, float]] = None


def prepare_image(
    loaded: LoadedImage,
    bucket: Size,
    resized: Optional[Size],
    transform: ImageTransform,
    rng: random.Random,
    *,
    face: Optional[tuple[int, int, int, int]] = None,
    flip: Optional[bool] = None,
    mask: Optional[Image.Image] = None,
) -> PreparedImage:
    """Resize (keeping aspect, covering the bucket), crop, colour-augment and flip one image.

    `resized` is the size chosen at bucketing time; it is recomputed if the decoded image has another size.
    `flip` forces the flip decision (latent caching encodes both); by default flip_aug flips half the time.
    `mask` (mode "L", the image's size) is a masked-loss weight map; it follows every geometric step and is
    multiplied into the alpha mask.
    """
    rgb = loaded.rgb
    original = rgb.size
    weights = []  # "L" images that become the loss weight map
    if transform.alpha_mask and loaded.alpha is not None:
        weights.append(loaded.alpha)
    if mask is not None:
        weights.append(mask)
    if face is not None and transform.face_crop_aug_range is not None:
        resized, (left, top) = face_crop_window(
            original, face, bucket, transform.face_crop_aug_range, transform.random_crop, rng
        )
    else:
        if resized is None or resized[0] < bucket[0] or resized[1] < bucket[1] or not _same_aspect(original, resized):
            resized = resize_to_cover(original, bucket)
        left, top = crop_offsets(resized, bucket, transform.random_crop, rng)
    box = (left, top, left + bucket[0], top + bucket[1])
    rgb = resize(rgb, resized, transform.interpolation).crop(box)
    weights = [resize(w, resized, transform.interpolation).crop(box) for w in weights]

    if transform.color_aug:
        rgb = color_augment(rgb, rng)

    if flip is None:
        flip = transform.flip_aug and rng.random() < 0.5
    if flip:
        rgb = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        weights = [w.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for w in weights]
        left = resized[0] - left - bucket[0]  # where the window starts in the mirrored image

    weight_map = None
    if transform.alpha_mask or mask is not None:
        weight_map = np.ones((bucket[1], bucket[0]), dtype=np.float32)
        for w in weights:
            weight_map *= np.asarray(w, dtype=np.float32) / 255.0
    return PreparedImage(
        rgb=rgb, alpha=weight_map, original_size=original, resized=resized, crop_left_top=(left, top), flipped=flip
    )


def load_mask(path: str | Path, size: Size) -> Image.Image:
    """A masked-loss mask image as mode "L" (its red channel, as sd-scripts), EXIF-rotated, at the image's size."""
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            red = to_rgb_and_alpha(img).rgb.getchannel("R")
    except Exception as err:
        raise ImageError(f"cannot decode mask {path}: {type(err).__name__}: {err}") from err
    return red if red.size == tuple(size) else red.resize(size, Image.Resampling.BILINEAR)


def _same_aspect(a: Size, b: Size) -> bool:
    # a resized size computed from the header matches the decoded image unless w/h were swapped (EXIF) or wrong
    return abs(a[0] / a[1] - b[0] / b[1]) < 0.05 * (a[0] / a[1])


def to_tensor(rgb: Image.Image) -> torch.Tensor:
    """(3, H, W) float32 in [-1, 1]."""
    arr = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)
    return arr.float().div_(127.5).sub_(1.0)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """Inverse of `to_tensor` (for previews)."""
    arr = ((tensor.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")
