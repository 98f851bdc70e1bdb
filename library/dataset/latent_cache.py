"""Latent cache: each training image encoded by the VAE once, in memory or in one file per image.

A cache file `<image stem>_<W>x<H>_ti.npz` (or `.safetensors`) sits next to the image, or in a cache directory.
It records what the latents depend on (image file size and mtime, bucket, resize, crop, flip, alpha mask, VAE
fingerprint, sampling mode, dtype); a file is reused only when all of that matches, otherwise recomputed.

Sampling modes (A1111's names): `once` samples the VAE posterior at caching time (sd-scripts), `deterministic`
uses its mean, `random` stores mean and std and draws a new sample for every training step.
Latents are stored scaled: (z - shift_factor) * scaling_factor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from library.dataset.buckets import Size, crop_offsets
from library.dataset.images import ImageTransform, load_image, load_mask, prepare_image, to_tensor
from library.atomic import atomic_path
from library.errors import UserError

logger = logging.getLogger(__name__)

SAMPLING_MODES = ("once", "deterministic", "random")
FILE_FORMATS = ("npz", "safetensors")
CACHE_VERSION = 1


@dataclass
class CachedLatents:
    """Latents of one image (C, h, w), scaled; flipped versions when the subset has flip_aug."""

    latents: torch.Tensor  # the sample (`once`) or the mean
    std: Optional[torch.Tensor]  # only for `random`
    latents_flipped: Optional[torch.Tensor]
    std_flipped: Optional[torch.Tensor]
    alpha: Optional[torch.Tensor]  # (H, W) in [0, 1] when the subset has alpha_mask
    original_size: Size
    crop_left_top: Size
    resized: Size
    bucket: Size


def latents_for_sample(record, flip: bool, rng: random.Random):
    """(latents, alpha, original size, crop left/top) for one training sample of a cached record."""
    entry: CachedLatents = record.latents if record.latents is not None else load_cache_file(record.latent_file)
    left, top = entry.crop_left_top
    alpha = entry.alpha
    if flip:
        if entry.latents_flipped is None:
            raise RuntimeError(f"{record.path}: flipped latents were not cached; re-run cache_latents")
        latents, std = entry.latents_flipped, entry.std_flipped
        alpha = None if alpha is None else torch.flip(alpha, dims=[1])
        left = entry.resized[0] - left - entry.bucket[0]
    else:
        latents, std = entry.latents, entry.std
    if std is not None:
        generator = torch.Generator().manual_seed(rng.getrandbits(63))
        latents = latents + std * torch.randn(latents.shape, generator=generator, dtype=latents.dtype)
    return latents, alpha, entry.original_size, (left, top)


# ---------------------------------------------------------------------------------------------------------------
# files


def cache_path(image_path: str, bucket: Size, cache_dir: Optional[str] = None, file_format: str = "npz") -> Path:
    """Where an image's cache file lives; in a shared cache_dir the name carries a hash of the image's folder."""
    image = Path(image_path)
    w, h = bucket
    if cache_dir is None:
        return image.with_name(f"{image.stem}_{w}x{h}_ti.{file_format}")
    folder = hashlib.sha1(str(image.parent.resolve()).encode()).hexdigest()[:8]
    return Path(cache_dir) / f"{image.stem}_{folder}_{w}x{h}_ti.{file_format}"


def _save(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    text = json.dumps(meta, sort_keys=True)
    with atomic_path(path) as tmp:  # never a half-written cache file under the real name
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"meta": text})
        else:
            with open(tmp, "wb") as f:
                np.savez(f, meta=np.array(text), **{k: v.numpy() for k, v in tensors.items()})


def read_cache_meta(path: str | Path) -> Optional[dict]:
    """The metadata a cache file was written with, or None if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                return json.loads((f.metadata() or {}).get("meta", "null"))
        with np.load(path) as npz:
            return json.loads(str(npz["meta"]))
    except Exception as err:  # a damaged cache file is recomputed, not fatal
        logger.warning("ignoring unreadable latent cache file %s (%s)", path, err)
        return None


def load_cache_file(path: str | Path) -> CachedLatents:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = json.loads(f.metadata()["meta"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    else:
        with np.load(path) as npz:
            meta = json.loads(str(npz["meta"]))
            tensors = {k: torch.from_numpy(npz[k]) for k in npz.files if k != "meta"}
    return _entry(tensors, meta)


def _entry(tensors: dict[str, torch.Tensor], meta: dict) -> CachedLatents:
    return CachedLatents(
        latents=tensors["latents"],
        std=tensors.get("std"),
        latents_flipped=tensors.get("latents_flipped"),
        std_flipped=tensors.get("std_flipped"),
        alpha=tensors.get("alpha_mask"),
        original_size=tuple(meta["original_size"]),
        crop_left_top=tuple(meta["crop_left_top"]),
        resized=tuple(meta["resized"]),
        bucket=tuple(meta["bucket"]),
    )


# ---------------------------------------------------------------------------------------------------------------
# keys


def vae_fingerprint(vae) -> str:
    """Identifies a VAE by its config and a sample of its weights (cheap; no full hash of the model)."""
    h = hashlib.sha1(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    params = list(vae.parameters())
    for p in (params[0], params[len(params) // 2], params[-1]):
        h.update(p.detach().flatten()[:4096].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def expected_meta(record, transform: ImageTransform, vae_id: str, sampling: str, dtype: torch.dtype) -> dict:
    """What a cache file for `record` must have been written with to be reused."""
    stat = os.stat(record.path)
    mask = None
    if record.mask_path:
        mask_stat = os.stat(record.mask_path)
        mask = [record.mask_path, mask_stat.st_size, mask_stat.st_mtime_ns]
    return {
        "version": CACHE_VERSION,
        "image_bytes": stat.st_size,
        "image_mtime_ns": stat.st_mtime_ns,
        "bucket": list(record.bucket),
        "planned_resize": list(record.resized),
        "planned_crop": list(crop_offsets(record.resized, record.bucket, False, None)),
        "flip_aug": transform.flip_aug,
        "alpha_mask": transform.alpha_mask,
        "mask": mask,
        "interpolation": transform.interpolation,
        "vae": vae_id,
        "sampling": sampling,
        "dtype": str(dtype).removeprefix("torch."),
    }


def _matches(meta: Optional[dict], expected: dict) -> bool:
    return meta is not None and all(meta.get(k) == v for k, v in expected.items())


# ---------------------------------------------------------------------------------------------------------------
# caching


def _encode(vae, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dist = vae.encode(pixels).latent_dist
    scale = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return ((dist.mean.float() - shift) * scale).cpu(), (dist.std.float() * scale).cpu()


def cache_latents(
    group,
    vae,
    *,
    vae_batch_size: int = 1,
    to_disk: bool = False,
    cache_dir: Optional[str] = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    sampling: str = "once",
    file_format: str = "npz",
    skip_check: bool = False,
) -> None:
    """Encode every image of `group` once; afterwards batches carry `latents` and `images` is None.

    In memory, or with `to_disk` one file per image (reused when still valid). Holds no reference to `vae`.
    `skip_check` (--skip_cache_check) reuses any existing file without comparing what it was written with.
    """
    blockers = group.latent_cache_blockers()
    if blockers:
        raise UserError(
            "latents cannot be cached when images change every epoch (random_crop or color_aug), as in sd-scripts: "
            + "; ".join(blockers)
            + ". Turn those options off, or train without --cache_latents"
        )
    if sampling not in SAMPLING_MODES:
        raise UserError(f"latent sampling mode {sampling!r} is unknown; use one of {', '.join(SAMPLING_MODES)}")
    if file_format not in FILE_FORMATS:
        raise UserError(f"latent cache format {file_format!r} is unknown; use one of {', '.join(FILE_FORMATS)}")
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)

    vae_id = vae_fingerprint(vae)
    todo = []  # (record, transform, expected meta, file path or None)
    reused = 0
    for part in group.parts:
        for record in part.records:
            transform = part.transforms[record.subset_index]
            meta = expected_meta(record, transform, vae_id, sampling, dtype)
            path = cache_path(record.path, record.bucket, cache_dir, file_format) if to_disk else None
            if path is not None and (path.is_file() if skip_check else _matches(read_cache_meta(path), meta)):
                record.latents, record.latent_file = None, str(path)
                reused += 1
                continue
            todo.append((record, transform, meta, path))
    if reused:
        logger.info("reusing %d cached latent file(s)", reused)
    if not todo:
        return

    todo.sort(key=lambda t: (t[0].bucket, t[0].path))  # a VAE batch needs one size
    batches, batch = [], []
    for item in todo:
        if batch and (batch[-1][0].bucket != item[0].bucket or len(batch) >= vae_batch_size):
            batches.append(batch)
            batch = []
        batch.append(item)
    batches.append(batch)

    vae.to(device=device)
    if vae.dtype != dtype:
        vae.to(dtype=dtype)
    with torch.no_grad():
        for batch in tqdm(batches, desc="caching latents", unit="batch", smoothing=0.1):
            _cache_batch(group.seed, vae, batch, device, dtype, sampling)


def once_generator(seed: int, path) -> torch.Generator:
    """The generator of an image's one posterior draw (--latent_sampling once): fixed by (seed, file name), so a
    rebuilt cache and the uncached path draw the same latents, and the same images in another folder (a moved or
    copied dataset) train the same embedding."""
    name = Path(path).name
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha1(f"{seed}:{name}".encode()).digest()[:7], "big"))


def _cache_batch(seed: int, vae, batch, device, dtype, sampling: str) -> None:
    prepared = []
    for record, transform, _, _ in batch:
        loaded = load_image(record.path)
        mask = load_mask(record.mask_path, loaded.size) if record.mask_path else None
        views = [
            prepare_image(loaded, record.bucket, record.resized, transform, random.Random(0), flip=flip, mask=mask)
            for flip in ((False, True) if transform.flip_aug else (False,))
        ]
        prepared.append(views)

    pixels = torch.stack([to_tensor(view.rgb) for views in prepared for view in views])
    means, stds = _encode(vae, pixels.to(device=device, dtype=dtype))
    from library.training.precision import check_finite_latents  # a half VAE's overflow, caught before it is cached

    check_finite_latents(means, vae.dtype, ", ".join(str(record.path) for record, *_ in batch))

    k = 0
    for (record, transform, meta, path), views in zip(batch, prepared):
        mean, std = means[k : k + len(views)], stds[k : k + len(views)]
        k += len(views)
        if sampling == "once":
            # a fixed per-image draw, so a rebuilt cache holds the same latents
            mean = mean + std * torch.randn(mean.shape, generator=once_generator(seed, record.path))
        keep_std = sampling == "random"
        base = views[0]
        tensors = {"latents": mean[0].contiguous()}
        if keep_std:
            tensors["std"] = std[0].contiguous()
        if len(views) > 1:
            tensors["latents_flipped"] = mean[1].contiguous()
            if keep_std:
                tensors["std_flipped"] = std[1].contiguous()
        if base.alpha is not None:
            tensors["alpha_mask"] = torch.from_numpy(base.alpha)
        file_meta = dict(
            meta,
            original_size=list(base.original_size),
            crop_left_top=list(base.crop_left_top),
            resized=list(base.resized),
        )
        if path is not None:
            _save(path, tensors, file_meta)
            record.latents, record.latent_file = None, str(path)
        else:
            record.latents, record.latent_file = _entry(tensors, file_meta), None
