"""Latent caching through a tiny real VAE: memory and disk, reuse and invalidation, flips, sampling modes."""

import os

import pytest
import torch
from dataset_helpers import group_params, write_image
from PIL import Image

from library.dataset.group import build_dataset_group, make_dataloader
from library.dataset.latent_cache import cache_path, load_cache_file, read_cache_meta
from library.dataset.params import SubsetParams
from library.errors import UserError


@pytest.fixture
def image_dir(tmp_path):
    """Two images in two buckets (fewer VAE calls than the shared four-image fixture)."""
    d = tmp_path / "images"
    for i, size in enumerate([(64, 64), (96, 64)]):
        write_image(d / f"img{i}.png", size, seed=i)
        (d / f"img{i}.txt").write_text(f"sks, tag{i}")
    return d


@pytest.fixture(scope="module")
def vae():
    from library.models.tiny import build_tiny_components

    return build_tiny_components("sd1")["vae"].eval()


def make_group(image_dir, **subset_kw):
    subset_kw.setdefault("caption_extension", ".txt")
    params = group_params(
        SubsetParams(image_dir=str(image_dir), **subset_kw),
        enable_bucket=True,
        min_bucket_reso=32,
        max_bucket_reso=128,
        bucket_reso_steps=16,
        batch_size=2,
    )
    return build_dataset_group(params, seed=0)


def test_in_memory_cache_gives_latent_batches(image_dir, vae):
    group = make_group(image_dir)
    group.cache_latents(vae, vae_batch_size=3)
    assert group.has_latents
    for batch in make_dataloader(group):
        b, _, h, w = (*batch["latents"].shape[:2], *batch["target_sizes_hw"][0].tolist())
        assert batch["images"] is None
        assert batch["latents"].shape == (b, 4, h // 8, w // 8)
        assert batch["latents"].dtype == torch.float32


def test_cached_latents_match_encoding_the_batch_image(image_dir, vae):
    plain = make_group(image_dir)
    cached = make_group(image_dir)
    cached.cache_latents(vae, sampling="deterministic")
    batch = plain[0]
    with torch.no_grad():
        expected = vae.encode(batch["images"]).latent_dist.mean * vae.config.scaling_factor
    assert torch.allclose(cached[0]["latents"], expected, atol=1e-5)
    assert cached[0]["image_paths"] == batch["image_paths"]


def test_disk_cache_reused_and_invalidated(image_dir, vae, tmp_path):
    group = make_group(image_dir)
    group.cache_latents(vae, to_disk=True)
    record = group.records[0]
    path = cache_path(record.path, record.bucket)
    assert (
        path.name
        == f"{os.path.splitext(os.path.basename(record.path))[0]}_{record.bucket[0]}x{record.bucket[1]}_ti.npz"
    )
    assert path.is_file() and record.latent_file == str(path) and record.latents is None
    first = {r.path: os.stat(r.latent_file).st_mtime_ns for r in group.records}
    before = group[0]["latents"]

    again = make_group(image_dir)
    again.cache_latents(vae, to_disk=True)
    assert {r.path: os.stat(r.latent_file).st_mtime_ns for r in again.records} == first  # reused
    assert torch.equal(again[0]["latents"], before)

    # the image changed: only its file is recomputed
    changed = group.records[1].path
    write_image(type(path)(changed), group.records[1].size, seed=99)
    again = make_group(image_dir)
    again.cache_latents(vae, to_disk=True)
    now = {r.path: os.stat(r.latent_file).st_mtime_ns for r in again.records}
    assert now[changed] != first[changed]
    assert all(now[p] == first[p] for p in first if p != changed)

    # another VAE: everything is recomputed
    other = type(vae)(**vae.config)
    again = make_group(image_dir)
    again.cache_latents(other, to_disk=True)
    assert all(os.stat(r.latent_file).st_mtime_ns != now[r.path] for r in again.records)
    assert read_cache_meta(again.records[0].latent_file)["sampling"] == "once"


def test_cache_dir_and_safetensors(image_dir, vae, tmp_path):
    group = make_group(image_dir)
    group.cache_latents(vae, to_disk=True, cache_dir=str(tmp_path / "cache"), file_format="safetensors")
    files = sorted(os.listdir(tmp_path / "cache"))
    assert len(files) == 2 and all(f.endswith("_ti.safetensors") for f in files)
    entry = load_cache_file(group.records[0].latent_file)
    assert entry.latents.shape[0] == 4 and entry.bucket == group.records[0].bucket


def test_flip_aug_caches_both_orientations(tmp_path, vae):
    d = tmp_path / "flip"
    img = write_image(d / "a.png", (64, 64))
    (d / "a.txt").write_text("sks")
    group = make_group(d, flip_aug=True, alpha_mask=True)
    group.cache_latents(vae, to_disk=True)
    entry = load_cache_file(group.records[0].latent_file)
    assert entry.latents_flipped is not None and not torch.equal(entry.latents, entry.latents_flipped)
    assert entry.alpha is not None
    flips = set()
    for epoch in range(8):
        group.set_epoch(epoch)
        batch = group[0]
        flip = bool(batch["flipped"][0])
        flips.add(flip)
        assert torch.equal(batch["latents"][0], entry.latents_flipped if flip else entry.latents)
        assert batch["alpha_masks"].shape == (1, 1, 64, 64)
    assert flips == {True, False}
    assert img.exists()


def test_random_sampling_draws_per_sample(image_dir, vae):
    group = make_group(image_dir)
    group.cache_latents(vae, sampling="random")
    record = group.records[0]
    assert record.latents.std is not None
    group.set_epoch(0)
    a = group[0]["latents"]
    group.set_epoch(1)
    b_group = [group[i] for i in range(len(group))]
    group.set_epoch(0)
    assert torch.equal(group[0]["latents"], a)  # deterministic per (seed, epoch, item)
    assert all(x["latents"].shape[1] == 4 for x in b_group)


def test_random_crop_or_color_aug_refuse_caching(image_dir, vae):
    with pytest.raises(UserError, match="random_crop"):
        make_group(image_dir, random_crop=True).cache_latents(vae)
    with pytest.raises(UserError, match="color_aug"):
        make_group(image_dir, color_aug=True).cache_latents(vae)


def test_masks_are_cached_and_a_changed_mask_invalidates(tmp_path, vae):
    d, masks = tmp_path / "imgs", tmp_path / "masks"
    write_image(d / "a.png", (64, 64))
    (d / "a.txt").write_text("sks")
    masks.mkdir()
    Image.new("RGB", (64, 64), (128, 0, 0)).save(masks / "a.png")
    group = make_group(d, conditioning_data_dir=str(masks))
    group.cache_latents(vae, to_disk=True)
    batch = group[0]
    assert batch["alpha_masks"].shape == (1, 1, 64, 64)
    assert float(batch["alpha_masks"].mean()) == pytest.approx(128 / 255)
    stamp = os.stat(group.records[0].latent_file).st_mtime_ns
    Image.new("RGB", (64, 64), (255, 0, 0)).save(masks / "a.png")
    again = make_group(d, conditioning_data_dir=str(masks))
    again.cache_latents(vae, to_disk=True)
    assert os.stat(again.records[0].latent_file).st_mtime_ns != stamp
    assert float(again[0]["alpha_masks"].mean()) == pytest.approx(1.0)


def test_the_same_images_in_another_folder_cache_the_same_latents(image_dir, vae, tmp_path):
    # --latent_sampling once draws each image's latents from (seed, file name): a moved dataset trains the same way
    import shutil

    moved = shutil.copytree(image_dir, tmp_path / "elsewhere" / "images")
    here, there = make_group(image_dir), make_group(moved)
    here.cache_latents(vae)
    there.cache_latents(vae)
    assert all(torch.equal(here[i]["latents"], there[i]["latents"]) for i in range(len(here)))
