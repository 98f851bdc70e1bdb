"""`--train_data_dir` without a dataset config: sd-scripts' `N_name` subfolders, or a flat folder of images.

sd-scripts reads `DIR/10_mychar/*.png` (10 repeats, class tokens "mychar"). The diffusers example and AUTOMATIC1111
read the images straight from DIR. The folder itself tells which one is meant:

- only `N_name` subfolders: sd-scripts' layout, exactly as before;
- images directly in DIR and no `N_name` subfolders: one subset with --dataset_repeats repeats (the diffusers
  example's --repeats). Captions: `.caption` files (sd-scripts' default extension) or, when there are none and `.txt`
  files exist (AUTOMATIC1111's layout), the `.txt` files, said at start;
- both: an error, since either reading would silently drop half of the images;
- neither: an error.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from library.dataset.config_paths import IMAGE_EXTENSIONS, dreambooth_subsets_from_folders, parse_repeat_folder_name
from library.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_CAPTION_EXTENSION = ".caption"  # sd-scripts' default; AUTOMATIC1111 writes .txt


def _loose_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _repeat_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and parse_repeat_folder_name(p.name))


def is_flat_folder(train_data_dir: str | Path) -> bool:
    """True when the folder holds images directly and no `N_name` subfolders (UserError when it holds both)."""
    folder = Path(train_data_dir)
    if not folder.is_dir():
        return False  # the sd-scripts path reports missing folders
    images, subfolders = _loose_images(folder), _repeat_folders(folder)
    if images and subfolders:
        raise UserError(
            f"--train_data_dir {folder} mixes {len(subfolders)} N_name subfolder(s) (e.g. {subfolders[0].name}) with "
            f"{len(images)} image(s) directly in it (e.g. {images[0].name}); move the loose images into a subfolder such "
            f"as {folder / ('10_' + folder.name)}, or the subfolders out"
        )
    return bool(images)


def caption_file_counts(folders: list[Path], extensions: tuple[str, ...]) -> dict[str, int]:
    """How many files with each extension the folders hold (caption files beside the images)."""
    counts = dict.fromkeys(extensions, 0)
    for folder in folders:
        for p in folder.iterdir():
            if p.is_file() and p.suffix.lower() in counts:
                counts[p.suffix.lower()] += 1
    return counts


def subsets_for_train_data_dir(args: argparse.Namespace) -> list[dict]:
    """Subset tables for --train_data_dir (and --reg_data_dir) in whichever layout the folder has."""
    train_dir = Path(args.train_data_dir)
    reg_dir = getattr(args, "reg_data_dir", None)
    extension = getattr(args, "caption_extension", None) or DEFAULT_CAPTION_EXTENSION
    if not is_flat_folder(train_dir):
        if train_dir.is_dir() and not _repeat_folders(train_dir) and not any(p.is_dir() for p in train_dir.iterdir()):
            raise UserError(
                f"--train_data_dir {train_dir} has no images ({', '.join(IMAGE_EXTENSIONS)}) and no N_name subfolders; "
                f"put the training images in it, or in subfolders such as {train_dir / '10_mychar'}"
            )
        subsets = dreambooth_subsets_from_folders(train_dir, reg_dir)
        _hint_txt_captions([Path(s["image_dir"]) for s in subsets], extension)
        return subsets
    subset: dict = {"image_dir": str(train_dir)}  # num_repeats: --dataset_repeats (--repeats)
    if extension == DEFAULT_CAPTION_EXTENSION:
        counts = caption_file_counts([train_dir], (".caption", ".txt"))
        if not counts[".caption"] and counts[".txt"]:
            logger.warning(
                "--train_data_dir %s: no .caption files, but %d .txt caption file(s) beside the images "
                "(AUTOMATIC1111's layout): using them. Pass --caption_extension .txt to say so explicitly",
                train_dir, counts[".txt"],
            )
            subset["caption_extension"] = ".txt"
    if parse_repeat_folder_name(train_dir.name):
        logger.warning(
            "--train_data_dir %s: %s looks like an N_name folder, but it is read as a flat folder (%s repeats from "
            "--dataset_repeats); pass its parent, %s, to use its repeat count as sd-scripts does",
            train_dir, train_dir.name, args.dataset_repeats, train_dir.parent,
        )
    logger.info("--train_data_dir %s holds the images directly (no N_name subfolders): one subset, %s repeats", train_dir, args.dataset_repeats)
    subsets = [subset]
    if reg_dir:
        subsets += _reg_subsets(reg_dir)
    return subsets


def _reg_subsets(reg_dir: str) -> list[dict]:
    from library.dataset.config_paths import _scan_repeat_folders

    return _scan_repeat_folders("--reg_data_dir", Path(reg_dir), is_reg=True)


def _hint_txt_captions(folders: list[Path], extension: str) -> None:
    """sd-scripts' folders keep .caption as the default; say so when only .txt captions are there."""
    if extension != DEFAULT_CAPTION_EXTENSION:
        return
    counts = caption_file_counts(folders, (".caption", ".txt"))
    if not counts[".caption"] and counts[".txt"]:
        logger.warning(
            "--train_data_dir: no .caption files, but %d .txt caption file(s) beside the images; they are NOT read "
            "(the caption extension defaults to .caption, as in sd-scripts). Pass --caption_extension .txt to use them",
            counts[".txt"],
        )
