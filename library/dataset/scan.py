"""Finding a subset's images and raw captions: DreamBooth folders (caption files) and fine-tuning metadata JSON.

One directory listing per folder; sizes come from image headers; nothing is decoded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

from library.dataset.buckets import Size
from library.dataset.captions import (
    caption_file_candidates,
    caption_from_text,
    fallback_caption,
    read_text_file,
)
from library.dataset.images import ImageError, is_image_file, parse_face_info, pixel_limit_problem, read_image_size, truncation_problem
from library.dataset.validation import Report


@dataclass
class ImageRecord:
    """One image of one subset, before repeats."""

    path: str
    caption: str  # raw caption (file contents, metadata, or fallback); processed per sample
    subset_index: int  # index into its dataset's subsets
    is_reg: bool
    size: Size  # (w, h) after EXIF rotation
    has_caption: bool = True
    face: Optional[tuple[int, int, int, int]] = None
    mask_path: Optional[str] = None  # masked loss: the mask image from conditioning_data_dir
    # filled by bucketing
    bucket: Optional[Size] = None
    resized: Optional[Size] = None
    # filled by latent caching: an in-memory entry or a cache file
    latents: Optional[object] = None
    latent_file: Optional[str] = None
    extra: dict = field(default_factory=dict)


def _listing(directory: str) -> list[str]:
    with os.scandir(directory) as it:
        return [e.name for e in it if e.is_file()]


def _check_image(path: str, report: Report) -> Optional[Size]:
    try:
        problem = truncation_problem(path)
        if problem:
            report.bad_image(path, problem)
            return None
        size = read_image_size(path)
        problem = pixel_limit_problem(size)
        if problem:
            report.bad_image(path, problem)
            return None
        return size
    except ImageError as err:
        report.bad_image(path, str(err))
    except OSError as err:
        report.bad_image(path, f"cannot read the file ({err.strerror or err})")
    return None


def scan_dreambooth_subset(subset, subset_index: int, where: str, report: Report, face_crop: bool) -> list[ImageRecord]:
    """Images in `subset.image_dir` with their caption files (or the class tokens / file stem)."""
    image_dir = subset.image_dir
    if not image_dir:
        report.error(f"{where}: no image_dir (a DreamBooth-style subset needs one)")
        return []
    if not os.path.isdir(image_dir):
        what = "is not a directory" if os.path.exists(image_dir) else "does not exist"
        report.error(f"{where}: image_dir {image_dir} {what}")
        return []
    names = _listing(image_dir)
    name_set = set(names)
    images = sorted(n for n in names if is_image_file(n))
    if not images:
        report.error(f"{where}: image_dir {image_dir} has no images (.png, .jpg, .webp, .bmp, ...)")
        return []

    records, missing, empty = [], [], []
    for name in images:
        path = os.path.join(image_dir, name)
        size = _check_image(path, report)
        if size is None:
            continue
        caption, found_file = None, False
        for candidate in caption_file_candidates(path, subset.caption_extension):
            if candidate.name in name_set:
                found_file = True
                caption = caption_from_text(read_text_file(candidate), subset.enable_wildcard)
                break
        has_caption = caption is not None
        if not has_caption:
            (empty if found_file else missing).append(path)
            caption = fallback_caption(path, subset.class_tokens)
        records.append(
            ImageRecord(
                path=path,
                caption=caption,
                subset_index=subset_index,
                is_reg=subset.is_reg,
                size=size,
                has_caption=has_caption,
                face=parse_face_info(path) if face_crop else None,
            )
        )
    instead = f"the class tokens '{subset.class_tokens}'" if subset.class_tokens else "the image file name"
    report.warn_list(f"{where}: images whose caption file is empty, using {instead} instead", empty)
    if not subset.class_tokens:  # with class tokens, no caption file is the DreamBooth convention
        report.warn_list(
            f"{where}: images without a {subset.caption_extension} caption file and no class_tokens, "
            "using the image file name as caption",
            missing,
        )
    return records


def _metadata_index(image_dir: Optional[str]) -> tuple[dict[str, str], dict[str, str]]:
    # file name -> path and stem -> path of the images in image_dir, for keys that are names or stems
    by_name: dict[str, str] = {}
    by_stem: dict[str, str] = {}
    if image_dir and os.path.isdir(image_dir):
        for name in sorted(_listing(image_dir)):
            if is_image_file(name):
                path = os.path.join(image_dir, name)
                by_name[name] = path
                by_stem.setdefault(os.path.splitext(name)[0], path)
    return by_name, by_stem


def resolve_metadata_key(key: str, image_dir: Optional[str], metadata_dir: str, index) -> Optional[str]:
    """The image a metadata key names: a path (absolute, relative to the working directory, the image_dir or
    the metadata file; Windows separators allowed), a file name in image_dir, or a stem in image_dir."""
    by_name, by_stem = index
    normalized = key.replace("\\", "/")
    candidates = [normalized]
    if not os.path.isabs(normalized):
        if image_dir:
            candidates.append(os.path.join(image_dir, normalized))
        candidates.append(os.path.join(metadata_dir, normalized))
    for candidate in candidates:
        if is_image_file(candidate) and os.path.isfile(candidate):
            return candidate
    base = normalized.rsplit("/", 1)[-1]
    if base in by_name:
        return by_name[base]
    stem = os.path.splitext(base)[0] if is_image_file(base) else base
    return by_stem.get(stem)


def _entry_type_problem(entry: object) -> Optional[str]:
    """What is wrong with the JSON types of one metadata entry (sd-scripts expects strings), or None."""
    if not isinstance(entry, dict):
        return f'must be an object like {{"caption": "...", "tags": "..."}}, not {_json_type(entry)}'
    for name in ("caption", "tags"):
        value = entry.get(name)
        if value is not None and not isinstance(value, str):
            return f'key "{name}" must be a string, not {_json_type(value)} ({json.dumps(value)[:40]})'
    return None


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _metadata_caption(entry: dict, subset) -> Optional[str]:
    # sd-scripts: caption, then tags appended with the caption separator (per line with wildcards)
    caption = entry.get("caption")
    tags = entry.get("tags")
    if caption is None:
        caption, tags = tags, None
    if subset.enable_wildcard:
        if tags is not None:
            tags = tags.replace("\n", subset.caption_separator)
        if caption is not None and tags is not None:
            caption = "\n".join(
                f"{line}{subset.caption_separator}{tags}" for line in caption.split("\n") if line.strip()
            )
    elif tags:
        caption = caption + subset.caption_separator + tags
    if caption is not None and not subset.enable_wildcard:
        caption = caption.split("\n")[0].strip()
    return caption or None


def scan_fine_tuning_subset(
    subset, subset_index: int, where: str, report: Report, face_crop: bool
) -> list[ImageRecord]:
    """Images named by `subset.metadata_file` with their captions/tags."""
    meta_path = subset.metadata_file
    if not os.path.isfile(meta_path):
        report.error(f"{where}: metadata_file {meta_path} does not exist")
        return []
    try:
        metadata = json.loads(read_text_file(meta_path))
    except json.JSONDecodeError as err:
        report.error(f"{where}: metadata_file {meta_path} is not valid JSON ({err})")
        return []
    if not isinstance(metadata, dict) or not metadata:
        report.error(
            f"{where}: metadata_file {meta_path} must be a JSON object "
            '{"image path or name": {"caption": ..., "tags": ...}, ...} with at least one image'
        )
        return []
    if subset.image_dir and not os.path.isdir(subset.image_dir):
        report.error(f"{where}: image_dir {subset.image_dir} does not exist")

    index = _metadata_index(subset.image_dir)
    meta_dir = os.path.dirname(os.path.abspath(meta_path))
    records, not_found, no_caption = [], [], []
    for key, entry in metadata.items():
        problem = _entry_type_problem(entry)
        if problem:
            report.error(f"{where}: metadata_file {meta_path}: entry {key!r}: {problem}")
            continue
        path = resolve_metadata_key(key, subset.image_dir, meta_dir, index)
        if path is None:
            not_found.append(key)
            continue
        size = _check_image(path, report)
        if size is None:
            continue
        caption = _metadata_caption(entry, subset)
        has_caption = caption is not None
        if not has_caption:
            no_caption.append(key)
            caption = fallback_caption(path, subset.class_tokens)
        records.append(
            ImageRecord(
                path=path,
                caption=caption,
                subset_index=subset_index,
                is_reg=False,  # sd-scripts: fine-tuning images are never regularization images
                size=size,
                has_caption=has_caption,
                face=parse_face_info(path) if face_crop else None,
            )
        )
    if not_found:
        listed = not_found[:20] + ([f"... and {len(not_found) - 20} more"] if len(not_found) > 20 else [])
        report.error(
            f"{where}: metadata_file {meta_path} names {len(not_found)} image(s) that do not exist "
            f"(looked relative to the working directory, image_dir {subset.image_dir} and the metadata file): "
            + "; ".join(listed)
        )
    report.warn_list(f"{where}: metadata entries without caption or tags, using the image file name", no_caption)
    return records


def attach_masks(records: list[ImageRecord], mask_dir: str, where: str, report: Report) -> None:
    """Masked loss: each image's mask is the image with the same stem in `mask_dir` (sd-scripts' rule)."""
    if not os.path.isdir(mask_dir):
        report.error(f"{where}: conditioning_data_dir {mask_dir} does not exist")
        return
    by_stem: dict[str, str] = {}
    for name in sorted(_listing(mask_dir)):
        if is_image_file(name):
            by_stem.setdefault(os.path.splitext(name)[0], os.path.join(mask_dir, name))
    missing, used = [], set()
    for record in records:
        stem = os.path.splitext(os.path.basename(record.path))[0]
        record.mask_path = by_stem.get(stem)
        if record.mask_path is None:
            missing.append(record.path)
        else:
            used.add(stem)
    if missing:
        report.error(
            f"{where}: {len(missing)} image(s) have no mask with the same name in conditioning_data_dir {mask_dir}: "
            + "; ".join(missing[:20])
            + (f"; ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        )
    report.warn_list(
        f"{where}: mask images in {mask_dir} without a training image of the same name",
        [p for stem, p in by_stem.items() if stem not in used],
    )


def scan_subset(subset, subset_index: int, where: str, report: Report, face_crop: bool = False) -> list[ImageRecord]:
    if subset.is_fine_tuning:
        records = scan_fine_tuning_subset(subset, subset_index, where, report, face_crop)
    else:
        records = scan_dreambooth_subset(subset, subset_index, where, report, face_crop)
    mask_dir = getattr(subset, "conditioning_data_dir", None)
    if mask_dir:
        attach_masks(records, mask_dir, where, report)
    return records
