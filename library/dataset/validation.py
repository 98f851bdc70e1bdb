"""Problems found while reading a dataset, reported all at once.

Scanning records every problem in a `Report` instead of stopping at the first; `Report.raise_if_errors` then
raises one `UserError` that lists them all (what, where, and what to do), and logs the warnings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from library.dataset.images import INTERPOLATIONS
from library.errors import UserError

logger = logging.getLogger(__name__)

MAX_LISTED = 20  # examples shown per kind of problem; the rest are counted


@dataclass
class Report:
    """Errors stop the run; bad images stop it unless skipped; warnings are logged."""

    errors: list[str] = field(default_factory=list)
    bad_images: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def bad_image(self, path: str, reason: str) -> None:
        self.bad_images.append((path, reason))

    def warn_list(self, headline: str, items: list[str]) -> None:
        """One warning: a headline with a count and the first examples."""
        if items:
            self.warnings.append(f"{headline} ({len(items)}): " + _examples(items))

    def raise_if_errors(self, source: str, skip_bad_images: bool = False) -> None:
        """Log warnings; raise one UserError listing every error (and bad image unless skipped)."""
        problems = list(self.errors)
        if self.bad_images:
            listed = [f"{path}: {reason}" for path, reason in self.bad_images]
            if skip_bad_images:
                self.warnings.append(
                    f"skipped {len(listed)} unreadable image(s) (--skip_bad_images): " + _examples(listed)
                )
            else:
                problems.append(
                    f"{len(listed)} image(s) cannot be used; fix or remove them, or pass --skip_bad_images "
                    "to train without them:\n      " + "\n      ".join(_head(listed))
                )
        for warning in self.warnings:
            logger.warning(warning)
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise UserError(f"the dataset from {source} has {len(problems)} problem(s):\n{lines}")


def _head(items: list[str]) -> list[str]:
    shown = items[:MAX_LISTED]
    if len(items) > MAX_LISTED:
        shown.append(f"... and {len(items) - MAX_LISTED} more")
    return shown


def _examples(items: list[str]) -> str:
    return "; ".join(_head(items))


def check_dataset_params(dataset, where: str, report: Report) -> None:
    """Settings the builder relies on: a resolution, bucket limits around it, steps the VAE can use."""
    if dataset.resolution is None:
        report.error(f"{where}: no resolution; set `resolution` in the dataset config or pass --resolution")
        return
    w, h = dataset.resolution
    if w <= 0 or h <= 0:
        report.error(f"{where}: resolution {w}x{h} must be positive")
    elif not dataset.enable_bucket and (w % 8 or h % 8):
        # with buckets the resolution only sets the area; without, it is the training size
        report.error(f"{where}: resolution {w}x{h} must be multiples of 8 without buckets (the VAE downsamples by 8)")
    if dataset.batch_size < 1:
        report.error(f"{where}: batch_size must be at least 1, got {dataset.batch_size}")
    if dataset.enable_bucket:
        steps = dataset.bucket_reso_steps
        if steps <= 0 or steps % 8:
            report.error(f"{where}: bucket_reso_steps must be a positive multiple of 8, got {steps}")
        if not dataset.bucket_no_upscale:
            if min(w, h) < dataset.min_bucket_reso:
                report.error(
                    f"{where}: min_bucket_reso {dataset.min_bucket_reso} is larger than the resolution's short side "
                    f"{min(w, h)}; lower min_bucket_reso or raise resolution"
                )
            if max(w, h) > dataset.max_bucket_reso:
                report.error(
                    f"{where}: max_bucket_reso {dataset.max_bucket_reso} is smaller than the resolution's long side "
                    f"{max(w, h)}; raise max_bucket_reso or lower resolution"
                )
    if not dataset.subsets:
        report.error(f"{where}: no subsets; add a [[datasets.subsets]] table with an image_dir")
    names = [("dataset", dataset.resize_interpolation)] + [
        (f"subset {i}", s.resize_interpolation) for i, s in enumerate(dataset.subsets)
    ]
    for what, name in names:
        if name is not None and name.lower() not in INTERPOLATIONS:
            known = ", ".join(sorted(INTERPOLATIONS))
            report.error(f"{where}, {what}: resize_interpolation {name!r} is unknown; use one of {known}")
    for i, subset in enumerate(dataset.subsets):
        if subset.face_crop_aug_range is not None and dataset.enable_bucket:
            report.warn(
                f"{where}, subset {i}: face_crop_aug_range is ignored with enable_bucket (as in sd-scripts); "
                "images are bucketed and centre-cropped instead"
            )
        if subset.num_repeats < 1:
            report.warn(
                f"{where}, subset {i} ({subset.image_dir}): num_repeats {subset.num_repeats} < 1; subset ignored"
            )


def check_image_sizes(datasets, scanned: list[list], report: Report) -> None:
    """Images too small for their dataset: an error where no bucket can hold them, else a warning (upscaled)."""
    for d, (dataset, records) in enumerate(zip(datasets, scanned)):
        if dataset.resolution is None:
            continue
        if dataset.enable_bucket and dataset.bucket_no_upscale:
            steps = dataset.bucket_reso_steps
            tiny = [f"{r.path} ({r.size[0]}x{r.size[1]})" for r in records if min(r.size) < steps]
            if tiny:
                report.error(
                    f"dataset {d}: with bucket_no_upscale, images must be at least bucket_reso_steps ({steps}) "
                    f"pixels on each side; {len(tiny)} are smaller: " + "; ".join(tiny[:20])
                )
            continue
        if dataset.enable_bucket:
            limit = dataset.min_bucket_reso
            small = [f"{r.path} ({r.size[0]}x{r.size[1]})" for r in records if min(r.size) < limit]
            what = f"min_bucket_reso ({limit}) on their short side"
        else:
            w, h = dataset.resolution
            small = [f"{r.path} ({r.size[0]}x{r.size[1]})" for r in records if r.size[0] < w or r.size[1] < h]
            what = f"the resolution ({w}x{h})"
        report.warn_list(f"dataset {d}: images smaller than {what}; they are upscaled, which softens them", small)
