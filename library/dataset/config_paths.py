"""The filesystem side of dataset settings: sd-scripts' `N_name` folder layout and checking that paths exist.

Kept out of the config parser so a dataset TOML can be validated on a machine that lacks its image folders.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Optional, Union

from library.dataset.config_schema import DatasetConfigError
from library.dataset.params import DatasetGroupParams
from library.errors import UserError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".avif", ".jxl")


def parse_repeat_folder_name(name: str) -> Optional[tuple[int, str]]:
    """'10_mychar girl' -> (10, 'mychar girl'), sd-scripts' rule; None when the name has no leading count."""
    head, _, rest = name.partition("_")
    try:
        return int(head), rest
    except ValueError:
        return None


def dreambooth_subsets_from_folders(
    train_data_dir: Union[str, Path], reg_data_dir: Union[str, Path, None] = None
) -> list[dict]:
    """Subset tables for --train_data_dir/--reg_data_dir: one per `N_name` subfolder (N repeats, name = class tokens).

    Folders without the count are skipped with a warning, as sd-scripts does; none at all is an error."""
    subsets = _scan_repeat_folders("--train_data_dir", Path(train_data_dir), is_reg=False)
    if reg_data_dir:
        subsets += _scan_repeat_folders("--reg_data_dir", Path(reg_data_dir), is_reg=True)
    return subsets


def attach_mask_folders(group, conditioning_data_dir: Union[str, Path]) -> None:
    """--conditioning_data_dir without a dataset config: the mask folder of each N_name training folder.

    A subfolder of the same name (DIR/10_mychar) when it exists, otherwise DIR itself; masks match images by file
    stem. Regularization subsets get none: their loss is not masked."""
    base = Path(conditioning_data_dir)
    for dataset in group.datasets:
        for subset in dataset.subsets:
            if subset.is_reg:
                continue
            own = base / Path(subset.image_dir).name
            subset.conditioning_data_dir = str(own if own.is_dir() else base)


def _scan_repeat_folders(flag: str, base: Path, is_reg: bool) -> list[dict]:
    if not base.exists():
        raise UserError(f"{flag} {base} does not exist{_path_hint(str(base), None)}")
    if not base.is_dir():
        raise UserError(f"{flag} {base} is a file, not a folder")
    subsets = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if folder.name.startswith("."):  # .ipynb_checkpoints and the like
            continue
        parsed = parse_repeat_folder_name(folder.name)
        if parsed is None:
            logger.warning("%s: skipping folder '%s': its name does not start with a repeat count (N_name, e.g. "
                           "10_%s)", flag, folder.name, folder.name)
            continue
        repeats, class_tokens = parsed
        if repeats < 1:
            logger.warning("%s: skipping folder '%s': repeat count %d is below 1", flag, folder.name, repeats)
            continue
        subsets.append(
            {"image_dir": str(folder), "num_repeats": repeats, "is_reg": is_reg, "class_tokens": class_tokens}
        )
    if not subsets:
        raise UserError(f"{flag} {base} has no N_name subfolders (e.g. {base / '10_mychar'}: N = how often each image "
                        f"is repeated per epoch, the rest = class tokens){_layout_hint(base)}")
    return subsets


def _layout_hint(base: Path) -> str:
    has_images = any(p.suffix.lower() in IMAGE_EXTENSIONS for p in base.iterdir() if p.is_file())
    if not has_images:
        return ""
    if parse_repeat_folder_name(base.name):
        return f"; {base.name} itself is such a folder: pass its parent, {base.parent}"
    return f"; the images are directly in {base}: move them into a subfolder such as {base / ('10_' + base.name)}"


def check_dataset_paths(group: DatasetGroupParams) -> None:
    """Raise one DatasetConfigError listing every image_dir, conditioning_data_dir or metadata_file that is
    missing, of the wrong kind, or (metadata) not a JSON object of images."""
    config_dir = _config_dir(group.source)
    found: dict[str, list[str]] = {}  # problem -> the subsets that have it
    checked_metadata: dict[str, Optional[str]] = {}
    for i, dataset in enumerate(group.datasets):
        for j, subset in enumerate(dataset.subsets):
            where = f"datasets[{i}].subsets[{j}]"
            for key in ("image_dir", "conditioning_data_dir"):
                path = getattr(subset, key)
                if path is not None:
                    problem = _folder_problem(key, path, config_dir)
                    if problem:
                        found.setdefault(problem, []).append(where)
            if subset.metadata_file is not None:
                if subset.metadata_file not in checked_metadata:
                    checked_metadata[subset.metadata_file] = _metadata_problem(subset.metadata_file, config_dir)
                problem = checked_metadata[subset.metadata_file]
                if problem:
                    found.setdefault(problem, []).append(where)
    if found:
        where = "command-line dataset flags" if config_dir is None else f"dataset config {group.source}"
        raise DatasetConfigError(where, [f"{', '.join(places)}: {problem}" for problem, places in found.items()])


def _config_dir(source: str) -> Optional[Path]:
    path = Path(source)
    return path.parent if path.suffix.lower() in (".toml", ".json") else None


def _folder_problem(key: str, path: str, config_dir: Optional[Path]) -> Optional[str]:
    p = Path(path)
    if p.is_dir():
        return None
    if p.exists():
        return f"{key} '{path}' is a file, not a folder"
    return f"{key} '{path}' does not exist{_path_hint(path, config_dir)}"


def _metadata_problem(path: str, config_dir: Optional[Path]) -> Optional[str]:
    p = Path(path)
    if not p.exists():
        return f"metadata_file '{path}' does not exist{_path_hint(path, config_dir)}"
    if p.is_dir():
        return f"metadata_file '{path}' is a folder; it must be the metadata JSON file"
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        return f"metadata_file '{path}' is not UTF-8 text"
    except json.JSONDecodeError as err:
        return f"metadata_file '{path}' is not valid JSON: line {err.lineno}, column {err.colno}: {err.msg}"
    if not isinstance(data, dict):
        return f"metadata_file '{path}' must hold a JSON object mapping image keys to their captions/tags"
    if not data:
        return f"metadata_file '{path}' lists no images"
    bad = next((k for k, v in data.items() if not isinstance(v, dict)), None)
    if bad is not None:
        return f"metadata_file '{path}': the entry for '{bad}' must be an object such as {{\"caption\": \"...\"}}"
    return None


def _path_hint(path: str, config_dir: Optional[Path]) -> str:
    if os.name != "nt" and (re.match(r"^[A-Za-z]:[\\/]", path) or "\\" in path):
        return " (a Windows path: on this system write the folder as it is here, with / separators)"
    p = Path(path)
    if p.is_absolute():
        return ""
    if config_dir is not None and (config_dir / p).exists():
        return (
            f" (relative paths are taken from the current directory, as in sd-scripts, not from the config's "
            f"folder; write {config_dir / p})"
        )
    return f" (relative to the current directory {Path.cwd()})"
