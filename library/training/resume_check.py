"""What a resumed run must share with the state it resumes, so that it continues exactly or is refused.

`run_identity` records the base model, the dataset (image files, captions, repeats, batch sizes), gradient
accumulation and process count; the state stores it in progress.json. On --resume the state's seed is taken
(and said so), and any other difference is refused in one error that names each one.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from pathlib import Path

from library.errors import UserError
from library.training.state import Progress

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth")


def model_identity(path: str) -> dict:
    """The base model as name and weight bytes (a file's size; a diffusers folder's weight files' total size).

    Size, not a content hash: hashing gigabytes would delay every resume; another model of the same family and
    exactly the same byte count is the case this does not catch."""
    p = Path(path)
    if p.is_file():
        return {"name": p.name, "bytes": p.stat().st_size}
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in _WEIGHT_SUFFIXES)
        return {"name": p.name, "bytes": sum(f.stat().st_size for f in files)}
    return {"name": str(path), "bytes": None}  # a hub id: its name is all there is


def dataset_identity(group) -> dict:
    """Image count, count with repeats, batch sizes and a fingerprint of every image (path, size, mtime), caption and repeats."""
    digest = hashlib.sha1()
    images = with_repeats = 0
    for part in group.parts:
        digest.update(f"dataset {part.index} batch {part.batch_size}\n".encode())
        for record in part.records:
            repeats = part.subsets[record.subset_index].num_repeats
            try:
                stat = os.stat(record.path)
                size, mtime = stat.st_size, stat.st_mtime_ns
            except OSError:
                size = mtime = -1
            digest.update(f"{record.path}\0{size}\0{mtime}\0{record.caption}\0{repeats}\0{record.is_reg}\n".encode())
            images += 1
            with_repeats += repeats
    return {"images": images, "with_repeats": with_repeats, "batch_sizes": [p.batch_size for p in group.parts], "fingerprint": digest.hexdigest()}


def run_identity(args: argparse.Namespace, family_name: str, group, num_processes: int) -> dict:
    return {
        "family": family_name,
        "base_model": model_identity(args.pretrained_model_name_or_path),
        "dataset": dataset_identity(group),
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "num_processes": num_processes,
    }


def adopt_saved_seed(args: argparse.Namespace, saved: Progress) -> None:
    """The data order and noise come from the seed: a resumed run uses the state's, whatever --seed says."""
    if saved.seed is None or saved.seed == args.seed:
        return
    given = "no --seed" if args.seed is None else f"--seed {args.seed}"
    logger.warning("--resume %s: continuing with the state's seed %d (%s given), so the run continues exactly", args.resume, saved.seed, given)
    args.seed = saved.seed


def resume_differences(saved: dict, current: dict) -> list[str]:
    """What differs between the state's run and this one, one phrase each (empty: it can continue exactly)."""
    found = []
    if saved.get("family") != current["family"]:
        found.append(f"model family: the state's {saved.get('family')}, this run's {current['family']}")
    s_model, c_model = saved.get("base_model") or {}, current["base_model"]
    if s_model.get("bytes") != c_model["bytes"] or (c_model["bytes"] is None and s_model.get("name") != c_model["name"]):
        found.append(
            f"base model: the state's {s_model.get('name')} ({s_model.get('bytes')} bytes), this run's {c_model['name']} ({c_model['bytes']} bytes)"
        )
    s_data, c_data = saved.get("dataset") or {}, current["dataset"]
    if s_data.get("batch_sizes") != c_data["batch_sizes"]:
        found.append(f"batch size: the state's {s_data.get('batch_sizes')}, this run's {c_data['batch_sizes']}")
    if (s_data.get("images"), s_data.get("with_repeats")) != (c_data["images"], c_data["with_repeats"]):
        found.append(
            f"dataset: the state's had {s_data.get('images')} images ({s_data.get('with_repeats')} with repeats), "
            f"this one has {c_data['images']} ({c_data['with_repeats']})"
        )
    elif s_data.get("fingerprint") != c_data["fingerprint"]:
        found.append("dataset: same number of images, but image files, captions or repeats changed")
    for key, flag in (("gradient_accumulation_steps", "--gradient_accumulation_steps"), ("num_processes", "number of processes")):
        if saved.get(key) != current[key]:
            found.append(f"{flag}: the state's {saved.get(key)}, this run's {current[key]}")
    return found


def check_resume(path: str, saved: Progress, current: dict, token_names: list[str]) -> None:
    """Refuse a resume that could not continue the state's run exactly, naming every difference."""
    found = []
    if saved.token_names and saved.token_names != token_names:
        found.append(f"tokens: the state trained {saved.token_names}, this run {token_names} (--token_string, --num_vectors_per_token)")
    if saved.run is None:
        logger.warning(
            "--resume %s: the state was written by an older version without a record of its model, dataset and batch "
            "size, so they cannot be checked; make sure they are the same as in the run that wrote it", path,
        )
    else:
        found += resume_differences(saved.run, current)
    if found:
        raise UserError(
            f"--resume {path} cannot continue that run exactly: " + "; ".join(found)
            + ". Resume with the state's settings, or start a new run from its vectors with --weights instead of --resume"
        )
