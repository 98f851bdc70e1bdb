"""SDXL's crop conditioning follows sd-scripts, whose value is not the crop applied to the pixels.

Source: kohya-ss/sd-scripts library/train_util.py, commit 0005867ba509d2e1a5674b267e8286b561c0ed71:
`BucketManager.get_crop_ltrb(bucket_reso, image_size)` fits the whole image inside the bucket and returns the
floored margins; `BaseDataset.__getitem__` passes (top, left), with left = bucket width - crop right when flipped.
"""

import pytest

from library.dataset.group import build_dataset_group
from library.dataset.images import size_conditioning_crop
from library.dataset.params import SubsetParams
from dataset_helpers import group_params, write_image

# (image w, h), (bucket w, h) -> sd-scripts' crop_top_lefts entry (top, left), unflipped and flipped
SD_SCRIPTS_CROP_TOP_LEFT = [
    ((768, 512), (320, 192), (0, 16), (0, 16)),  # reported in issue 15: ours was (10, 0), the pixels' crop
    ((640, 512), (256, 256), (25, 0), (25, 0)),  # reported in issue 15: ours was (0, 32)
    # computed by hand from get_crop_ltrb: fitted 1066.67 x 640, left (1152 - 1066.67) // 2 = 42, flipped 1152 - 1108.67
    ((1000, 600), (1152, 640), (0, 42), (0, 43)),
    ((700, 500), (384, 256), (0, 12), (0, 13)),  # fitted 358.4 x 256: left 12, flipped 384 - 370.4
    ((600, 1000), (640, 1152), (42, 0), (42, 0)),  # fitted 640 x 1066.67: top 42
    ((333, 500), (832, 1216), (0, 11), (0, 11)),
    ((1920, 1080), (1344, 768), (6, 0), (6, 0)),
    ((1024, 1024), (1024, 1024), (0, 0), (0, 0)),
]


def _formula(image, bucket, flipped):
    """sd-scripts' arithmetic, restated as a check of the table above."""
    bw, bh = bucket
    ar = image[0] / image[1]
    w, h = (bh * ar, bh) if bw / bh > ar else (bw, bw / ar)
    left, top = (bw - w) // 2, (bh - h) // 2
    return int(top), int(bw - (left + w) if flipped else left)


@pytest.mark.parametrize("image, bucket, top_left, flipped_top_left", SD_SCRIPTS_CROP_TOP_LEFT)
def test_crop_conditioning_is_sd_scripts_get_crop_ltrb(image, bucket, top_left, flipped_top_left):
    left, top = size_conditioning_crop(image, bucket, flipped=False)
    assert (top, left) == top_left == _formula(image, bucket, False)
    left, top = size_conditioning_crop(image, bucket, flipped=True)
    assert (top, left) == flipped_top_left == _formula(image, bucket, True)


def test_batches_carry_sd_scripts_crop_not_the_pixels_crop(tmp_path):
    d = tmp_path / "imgs"
    write_image(d / "wide.png", (768, 512))
    params = group_params(SubsetParams(image_dir=str(d), class_tokens="sks"), resolution=(256, 256), enable_bucket=True,
                          min_bucket_reso=64, max_bucket_reso=512, bucket_reso_steps=64)
    batch = build_dataset_group(params)[0]
    th, tw = batch["target_sizes_hw"][0].tolist()
    left, top = size_conditioning_crop((768, 512), (tw, th), flipped=False)
    assert batch["crop_top_lefts"].tolist() == [[top, left]]
    assert batch["original_sizes_hw"].tolist() == [[512, 768]]
