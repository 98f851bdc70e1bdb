"""gen_img.py's image writer: sd-scripts' file names, A1111 metadata, atomic files."""

from __future__ import annotations

from pathlib import Path

from library.sampling.generate import ImageJob
from library.sampling.saving import (
    gen_img_filename,
    image_parameters,
    next_sequential_number,
    save_png,
    sequential_filename,
    timestamp,
)


class ImageWriter:
    """Saves images under sd-scripts' names with A1111 metadata."""

    def __init__(self, outdir: str | Path, *, family: str, model_source: str, clip_skip: int | None,
                 ti_hashes: dict[str, str], img2img: bool, sequential: bool = False):
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.sequential = sequential
        self.number = next_sequential_number(self.outdir) if sequential else 0
        self.family = family
        self.model_name = Path(str(model_source).rstrip("/\\")).stem or str(model_source)
        self.clip_skip = clip_skip
        self.ti_hashes = ti_hashes
        self.img2img = img2img

    def save(self, image, job: ImageJob, prefix: str = "") -> Path:
        """Write `image`; `prefix` (e.g. the img2img source's name) goes before sd-scripts' name."""
        if self.sequential:
            name = sequential_filename(self.number)
            self.number += 1
        else:
            name = gen_img_filename(job, timestamp())
        parameters, extra = image_parameters(job, family=self.family, model_name=self.model_name,
                                             clip_skip=self.clip_skip, ti_hashes=self.ti_hashes, img2img=self.img2img)
        return save_png(image, self.outdir / (prefix + name), parameters, extra)
