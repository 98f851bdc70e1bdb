"""Image reading: sizes from headers (EXIF-aware), every pixel mode to RGB (+ alpha), resize/crop/flip/augment."""

import random

import numpy as np
import pytest
from PIL import Image

from library.dataset.images import (
    ImageError,
    ImageTransform,
    color_augment,
    face_crop_window,
    is_image_file,
    load_image,
    parse_face_info,
    prepare_image,
    read_image_size,
    resolve_interpolation,
    to_pil,
    to_tensor,
    truncation_problem,
)

from dataset_helpers import solid, write_image


def exif_rotated_jpeg(path, size, orientation):
    img = Image.new("RGB", size, (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, size[0] // 2, size[1]))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif.tobytes())
    return path


def test_extensions():
    for name in ("a.png", "b.JPG", "c.jpeg", "d.webp", "e.bmp", "f.tif", "g.gif"):
        assert is_image_file(name), name
    for name in ("a.txt", "a.caption", "a.npz", "a.json", "a.pdf", "clip.mpg"):
        assert not is_image_file(name), name


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "bmp"])
def test_header_sizes(tmp_path, fmt):
    path = write_image(tmp_path / f"a.{fmt}", (37, 23))
    assert read_image_size(path) == (37, 23)


@pytest.mark.parametrize(
    "orientation, expected", [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40)), (5, (20, 40))]
)
def test_exif_orientation_in_header_and_decode(tmp_path, orientation, expected):
    path = exif_rotated_jpeg(tmp_path / "r.jpg", (40, 20), orientation)
    assert read_image_size(path) == expected
    assert load_image(path).size == expected


def test_exif_rotation_moves_pixels(tmp_path):
    # orientation 6: rotate 90 degrees clockwise for display; the blue left half ends up on top
    loaded = load_image(exif_rotated_jpeg(tmp_path / "r.jpg", (40, 20), 6))
    arr = np.asarray(loaded.rgb).astype(int)
    assert arr[2, 10, 2] > 200 and arr[2, 10, 0] < 60
    assert arr[37, 10, 0] > 200


def test_rgba_keeps_colour_channels_and_alpha(tmp_path):
    path = solid(tmp_path / "a.png", (8, 8), (10, 200, 30, 64), mode="RGBA")
    loaded = load_image(path)
    assert loaded.rgb.mode == "RGB" and np.asarray(loaded.rgb)[0, 0].tolist() == [10, 200, 30]
    assert np.asarray(loaded.alpha)[0, 0] == 64


def test_la_and_palette_with_transparency(tmp_path):
    la = solid(tmp_path / "la.png", (4, 4), (120, 30), mode="LA")
    loaded = load_image(la)
    assert np.asarray(loaded.rgb)[0, 0].tolist() == [120, 120, 120] and np.asarray(loaded.alpha)[0, 0] == 30
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    loaded = load_image(tmp_path / "p.png")
    assert np.asarray(loaded.rgb)[0, 0].tolist() == [250, 10, 10] and np.asarray(loaded.alpha)[0, 0] == 255
    Image.new("RGB", (4, 4), (5, 6, 7)).convert("P").save(tmp_path / "p3.png")
    assert load_image(tmp_path / "p3.png").alpha is None


def test_cmyk_jpeg_to_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    rgb = np.asarray(load_image(tmp_path / "c.jpg").rgb).astype(int)
    assert rgb[4, 4, 0] > 200 and rgb[4, 4, 1] < 60 and rgb[4, 4, 2] < 60


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    arr = np.full((4, 4), 32768, dtype=np.uint16)
    arr[0, 0] = 65535
    Image.fromarray(arr).save(tmp_path / "g16.png")
    loaded = load_image(tmp_path / "g16.png")
    rgb = np.asarray(loaded.rgb)
    assert rgb[1, 1].tolist() == [128, 128, 128] and rgb[0, 0].tolist() == [255, 255, 255]


def test_truncated_and_empty_files(tmp_path):
    good = write_image(tmp_path / "ok.png", (32, 32))
    assert truncation_problem(good) is None
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert "truncated" in truncation_problem(tmp_path / "cut.png")
    jpg = write_image(tmp_path / "ok.jpg", (32, 32)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) - 100])
    assert "truncated" in truncation_problem(tmp_path / "cut.jpg")
    (tmp_path / "zero.png").write_bytes(b"")
    assert "empty" in truncation_problem(tmp_path / "zero.png")
    (tmp_path / "junk.png").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageError):
        read_image_size(tmp_path / "junk.png")
    with pytest.raises(ImageError):
        load_image(tmp_path / "junk.png")


def test_default_interpolation_area_down_lanczos_up():
    assert resolve_interpolation(None, (100, 100), (50, 50)) == Image.Resampling.BOX
    assert resolve_interpolation(None, (100, 100), (150, 80)) == Image.Resampling.LANCZOS
    assert resolve_interpolation("bicubic", (1, 1), (2, 2)) == Image.Resampling.BICUBIC
    assert resolve_interpolation("Hamming", (1, 1), (2, 2)) == Image.Resampling.HAMMING
    with pytest.raises(ValueError):
        resolve_interpolation("magic", (1, 1), (2, 2))


def test_prepare_resizes_crops_and_records_conditioning(tmp_path):
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 60, 100))  # white left strip
    loaded = load_image(solid(tmp_path / "x.png", (1, 1)))
    loaded.rgb = img
    prepared = prepare_image(loaded, (64, 64), (128, 64), ImageTransform(), random.Random(0))
    assert prepared.rgb.size == (64, 64) and prepared.original_size == (200, 100)
    assert prepared.resized == (128, 64) and prepared.crop_left_top == (32, 0) and not prepared.flipped
    flipped = prepare_image(loaded, (64, 64), (128, 64), ImageTransform(), random.Random(0), flip=True)
    assert flipped.crop_left_top == (128 - 32 - 64, 0)
    assert np.array_equal(np.asarray(flipped.rgb), np.asarray(prepared.rgb)[:, ::-1])


def test_prepare_alpha_mask_and_missing_alpha(tmp_path):
    loaded = load_image(solid(tmp_path / "a.png", (32, 32), (1, 2, 3, 128), mode="RGBA"))
    prepared = prepare_image(loaded, (16, 16), None, ImageTransform(alpha_mask=True), random.Random(0))
    assert prepared.alpha.shape == (16, 16) and abs(float(prepared.alpha.mean()) - 128 / 255) < 1e-6
    loaded = load_image(solid(tmp_path / "b.png", (32, 32)))
    prepared = prepare_image(loaded, (16, 16), None, ImageTransform(alpha_mask=True), random.Random(0))
    assert float(prepared.alpha.min()) == 1.0
    assert prepare_image(loaded, (16, 16), None, ImageTransform(), random.Random(0)).alpha is None


def test_random_crop_and_flip_follow_the_rng(tmp_path):
    loaded = load_image(write_image(tmp_path / "n.png", (100, 64)))
    t = ImageTransform(random_crop=True, flip_aug=True)
    a = prepare_image(loaded, (64, 64), (100, 64), t, random.Random(5))
    b = prepare_image(loaded, (64, 64), (100, 64), t, random.Random(5))
    assert a.crop_left_top == b.crop_left_top and a.flipped == b.flipped
    lefts = {prepare_image(loaded, (64, 64), (100, 64), t, random.Random(s)).crop_left_top for s in range(30)}
    assert len(lefts) > 5


def test_color_augment_changes_colours_a_little():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    changed = [color_augment(img, random.Random(s)) for s in range(40)]
    diffs = [np.abs(np.asarray(c, dtype=int) - np.asarray(img, dtype=int)).mean() for c in changed]
    assert any(d == 0 for d in diffs) and any(d > 0 for d in diffs)
    assert max(diffs) < 40


def test_face_info_and_face_crop():
    assert parse_face_info("/x/photo_0120_0080_0040_0050.png") == (120, 80, 40, 50)
    assert parse_face_info("/x/my_cat_photo.png") is None
    resized, (left, top) = face_crop_window(
        (400, 300), (300, 150, 100, 100), (128, 128), (2.0, 2.0), False, random.Random(0)
    )
    # face made 1/2 of the 128 side: scale 128 / (100 * 2) = 0.64
    assert resized == (256, 192)
    assert (left, top) == (192 - 64, 96 - 64)


def test_tensor_roundtrip():
    img = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    t = to_tensor(img)
    assert t.shape == (3, 4, 4) and float(t.min()) >= -1 and float(t.max()) <= 1
    assert np.array_equal(np.asarray(to_pil(t)), np.asarray(img))


def test_jpeg_with_data_after_the_end_marker_is_not_truncated(tmp_path):
    path = write_image(tmp_path / "motion.jpg", (32, 32))
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)  # e.g. a phone's motion-photo video appended after the JPEG
    assert truncation_problem(path) is None
