"""Bucket generation and assignment, pinned to sd-scripts' arithmetic."""

import random

from library.dataset.buckets import BucketManager, crop_offsets, make_buckets, no_upscale_bucket, resize_to_cover

BUCKETS_512 = [
    (256, 832),
    (256, 896),
    (256, 960),
    (256, 1024),
    (320, 704),
    (320, 768),
    (384, 640),
    (448, 576),
    (512, 512),
    (576, 448),
    (640, 384),
    (704, 320),
    (768, 320),
    (832, 256),
    (896, 256),
    (960, 256),
    (1024, 256),
]


def test_buckets_for_512_min_256_max_1024_step_64():
    assert make_buckets((512, 512), 256, 1024, 64) == BUCKETS_512
    assert all(w * h <= 512 * 512 and w % 64 == 0 and h % 64 == 0 for w, h in BUCKETS_512)


def test_buckets_for_1024_include_the_sdxl_shapes():
    buckets = make_buckets((1024, 1024), 512, 2048, 64)
    assert (1024, 1024) in buckets and (832, 1216) in buckets and (1216, 832) in buckets and (640, 1536) in buckets
    assert all(w * h <= 1024 * 1024 for w, h in buckets)
    assert buckets == sorted(set(buckets))


def test_non_square_resolution_uses_its_area():
    buckets = make_buckets((512, 768), 256, 1024, 64)
    assert (576, 576) in buckets  # the square: int(sqrt(512*768) // 64) * 64
    assert all(w * h <= 512 * 768 for w, h in buckets)


def test_select_bucket_by_nearest_aspect_ratio():
    m = BucketManager((512, 512), enable_bucket=True, min_size=256, max_size=1024, steps=64)
    cases = {
        (1024, 512): ((704, 320), (704, 352)),
        (512, 768): ((384, 640), (427, 640)),
        (600, 600): ((512, 512), (512, 512)),
        (576, 448): ((576, 448), (576, 448)),  # exact bucket size is kept
        (3000, 1000): ((832, 256), (832, 277)),
        (100, 100): ((512, 512), (512, 512)),  # upscaled
    }
    for (w, h), (bucket, resized) in cases.items():
        choice = m.select_bucket(w, h)
        assert (choice.bucket, choice.resized) == (bucket, resized), (w, h)
        assert choice.resized[0] >= bucket[0] and choice.resized[1] >= bucket[1]


def test_no_upscale_buckets_come_from_the_image():
    assert no_upscale_bucket((300, 200), 512 * 512, 64) == ((256, 192), (300, 200))
    assert no_upscale_bucket((1000, 800), 512 * 512, 64) == ((512, 384), (512, 410))
    m = BucketManager((512, 512), enable_bucket=True, steps=64, no_upscale=True)
    assert m.select_bucket(1000, 800).bucket == (512, 384)


def test_without_buckets_one_bucket_covered_then_cropped():
    m = BucketManager((512, 512), enable_bucket=False)
    choice = m.select_bucket(800, 600)
    assert choice.bucket == (512, 512) and choice.resized == (683, 512)
    assert m.select_bucket(300, 900).resized == (512, 1536)


def test_resize_to_cover_and_crop_offsets():
    assert resize_to_cover((1000, 500), (256, 256)) == (512, 256)
    assert crop_offsets((683, 512), (512, 512), False, None) == (85, 0)
    rng = random.Random(0)
    offsets = {crop_offsets((683, 512), (512, 512), True, rng) for _ in range(50)}
    assert all(0 <= left <= 171 and top == 0 for left, top in offsets) and len(offsets) > 10
