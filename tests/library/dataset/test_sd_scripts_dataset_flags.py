"""Specification of --skip_cache_check and --conditioning_data_dir (without a dataset config)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dataset_helpers import group_params, write_image

from library.dataset.arguments import default_dataset_args
from library.dataset.config import dataset_params_from_args
from library.dataset.group import build_dataset_group
from library.dataset.params import SubsetParams


@pytest.fixture(scope="module")
def vae():
    from library.models.tiny import build_tiny_components

    return build_tiny_components("sd1")["vae"].eval()


def _group(image_dir: Path):
    params = group_params(SubsetParams(image_dir=str(image_dir), caption_extension=".txt"), batch_size=1)
    return build_dataset_group(params, seed=0)


def test_skip_cache_check_reuses_a_stale_cache_file_that_would_otherwise_be_recomputed(tmp_path, vae):
    images = tmp_path / "images"
    write_image(images / "a.png", (64, 64), seed=0)
    (images / "a.txt").write_text("sks")
    _group(images).cache_latents(vae, to_disk=True)
    cache_file = Path(images / "a_64x64_ti.npz")
    stamp = os.stat(cache_file).st_mtime_ns

    write_image(images / "a.png", (64, 64), seed=5)  # the image changed: the cache no longer matches it
    skipped = _group(images)
    skipped.cache_latents(vae, to_disk=True, skip_check=True)
    assert os.stat(cache_file).st_mtime_ns == stamp and skipped.records[0].latent_file == str(cache_file)

    checked = _group(images)
    checked.cache_latents(vae, to_disk=True)
    assert os.stat(cache_file).st_mtime_ns != stamp  # without the flag, the stale file is recomputed


def test_skip_cache_check_still_computes_missing_files(tmp_path, vae):
    images = tmp_path / "images"
    write_image(images / "b.png", (64, 64), seed=1)
    (images / "b.txt").write_text("sks")
    group = _group(images)
    group.cache_latents(vae, to_disk=True, skip_check=True)
    assert (images / "b_64x64_ti.npz").is_file()


def _tree(root: Path, folder: str, *stems: str) -> Path:
    for stem in stems:
        write_image(root / folder / f"{stem}.png", (64, 64), seed=len(stem))
        (root / folder / f"{stem}.txt").write_text("mychar")
    return root


@pytest.mark.parametrize("layout", ["flat", "per_folder"])
def test_conditioning_data_dir_gives_masks_to_the_training_folders(tmp_path, layout):
    train = _tree(tmp_path / "train", "5_mychar", "a", "b")
    reg = _tree(tmp_path / "reg", "1_girl", "r")
    masks = tmp_path / "masks"
    mask_folder = masks if layout == "flat" else masks / "5_mychar"
    for stem in ("a", "b"):
        write_image(mask_folder / f"{stem}.png", (64, 64), mode="L", seed=3)
    args = default_dataset_args(train_data_dir=str(train), reg_data_dir=str(reg), resolution=(64, 64),
                                caption_extension=".txt")
    args.conditioning_data_dir, args.masked_loss = str(masks), True
    params = dataset_params_from_args(args)
    (dataset,) = params.datasets
    by_folder = {Path(s.image_dir).name: s for s in dataset.subsets}
    assert by_folder["5_mychar"].conditioning_data_dir == str(mask_folder)
    assert by_folder["5_mychar"].class_tokens == "mychar" and by_folder["5_mychar"].num_repeats == 5
    assert by_folder["1_girl"].conditioning_data_dir is None  # regularization images are not masked

    group = build_dataset_group(params, seed=0)
    masked = {Path(r.path).stem: r.mask_path for r in group.records}
    assert masked == {"a": str(mask_folder / "a.png"), "b": str(mask_folder / "b.png"), "r": None}


def test_conditioning_data_dir_without_masked_loss_changes_nothing_in_the_dataset(tmp_path):
    train = _tree(tmp_path / "train", "5_mychar", "a")
    args = default_dataset_args(train_data_dir=str(train), resolution=(64, 64), caption_extension=".txt")
    args.conditioning_data_dir = str(tmp_path / "masks")  # the trainer refuses this combination before here
    (dataset,) = dataset_params_from_args(args).datasets
    assert dataset.subsets[0].conditioning_data_dir is None
