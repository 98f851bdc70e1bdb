"""Aspect-ratio bucketing with sd-scripts' arithmetic, so the same images land in the same buckets.

Sizes are (width, height) throughout. Every function here is pure.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional

Size = tuple[int, int]


def make_buckets(max_reso: Size, min_size: int = 256, max_size: int = 1024, divisible: int = 64) -> list[Size]:
    """All buckets with area <= max_reso's area: the square one, then each width from min_size to max_size in
    `divisible` steps paired with the tallest height (a multiple of `divisible`, <= max_size) that fits the area,
    plus its transpose. Sorted, without duplicates (sd-scripts' `make_bucket_resolutions`)."""
    max_area = max_reso[0] * max_reso[1]
    resos = set()
    square = int(math.sqrt(max_area) // divisible) * divisible
    resos.add((square, square))
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


def round_to_steps(x: float, steps: int) -> int:
    """Round to the nearest integer, then down to a multiple of `steps`."""
    x = int(x + 0.5)
    return x - x % steps


def resize_to_cover(image_size: Size, bucket: Size) -> Size:
    """Size that keeps the image's aspect ratio and covers `bucket` exactly on one side."""
    w, h = image_size
    bw, bh = bucket
    scale = bh / h if w / h > bw / bh else bw / w
    # rounding can fall one pixel short on the long side; the crop needs at least the bucket
    return max(bw, int(w * scale + 0.5)), max(bh, int(h * scale + 0.5))


def no_upscale_bucket(image_size: Size, max_area: int, steps: int) -> tuple[Size, Size]:
    """bucket_no_upscale: (bucket, resized size) from the image itself, shrunk to `max_area` if larger.

    The resized size keeps the aspect ratio with one side a multiple of `steps` (the side whose rounding changes
    the aspect ratio least); the bucket is the resized size rounded down to `steps`, so the image is only cropped.
    """
    w, h = image_size
    aspect = w / h
    if w * h > max_area:
        resized_w = math.sqrt(max_area * aspect)
        resized_h = max_area / resized_w
        bw_rounded = round_to_steps(resized_w, steps)
        bh_in_wr = round_to_steps(bw_rounded / aspect, steps)
        bh_rounded = round_to_steps(resized_h, steps)
        bw_in_hr = round_to_steps(bh_rounded * aspect, steps)
        ar_w = bw_rounded / bh_in_wr if bh_in_wr else math.inf
        ar_h = bw_in_hr / bh_rounded if bh_rounded else math.inf
        if abs(ar_w - aspect) < abs(ar_h - aspect):
            resized = (bw_rounded, int(bw_rounded / aspect + 0.5))
        else:
            resized = (int(bh_rounded * aspect + 0.5), bh_rounded)
    else:
        resized = (w, h)
    bucket = (resized[0] - resized[0] % steps, resized[1] - resized[1] % steps)
    return bucket, resized


@dataclass(frozen=True)
class BucketChoice:
    bucket: Size  # training size (w, h)
    resized: Size  # the image is resized to this, then cropped to `bucket`
    ar_error: float  # bucket aspect ratio minus image aspect ratio


class BucketManager:
    """Assigns images to buckets for one dataset.

    With `enable_bucket=False` there is one bucket, `resolution`; images are resized to cover it and cropped.
    """

    def __init__(
        self,
        resolution: Size,
        *,
        enable_bucket: bool = False,
        min_size: int = 256,
        max_size: int = 1024,
        steps: int = 64,
        no_upscale: bool = False,
    ):
        self.resolution = tuple(resolution)
        self.max_area = resolution[0] * resolution[1]
        self.steps = steps
        self.no_upscale = enable_bucket and no_upscale
        if not enable_bucket:
            self.predefined: list[Size] = [self.resolution]
        elif self.no_upscale:
            self.predefined = []
        else:
            self.predefined = make_buckets(self.resolution, min_size, max_size, steps)
        self._predefined_set = set(self.predefined)
        self._aspects = [w / h for w, h in self.predefined]

    def select_bucket(self, image_w: int, image_h: int) -> BucketChoice:
        """The bucket with the nearest aspect ratio (first on ties), or the image's own with no_upscale."""
        aspect = image_w / image_h
        if self.no_upscale:
            bucket, resized = no_upscale_bucket((image_w, image_h), self.max_area, self.steps)
        else:
            if (image_w, image_h) in self._predefined_set:
                bucket = (image_w, image_h)
            else:
                errors = [abs(a - aspect) for a in self._aspects]
                bucket = self.predefined[errors.index(min(errors))]
            resized = resize_to_cover((image_w, image_h), bucket)
        return BucketChoice(bucket=bucket, resized=resized, ar_error=bucket[0] / max(bucket[1], 1) - aspect)


def crop_offsets(resized: Size, bucket: Size, random_crop: bool, rng: Optional[random.Random]) -> Size:
    """(left, top) of the bucket-sized window in the resized image: centered, or uniform with random_crop."""
    offsets = []
    for length, target in zip(resized, bucket):
        trim = length - target
        if trim <= 0:
            offsets.append(0)
        elif random_crop:
            offsets.append(rng.randint(0, trim))
        else:
            offsets.append(trim // 2)
    return offsets[0], offsets[1]
