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
                 ti_hashes: dict[str, str], img2img: bool, sequential: bool = False, staged: bool = False):
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.sequential = sequential
        self.number = next_sequential_number(self.outdir, staged=staged) if sequential else 0
        self.family = family
        self.model_name = Path(str(model_source).rstrip("/\\")).stem or str(model_source)
        self.clip_skip = clip_skip
        self.ti_hashes = ti_hashes
        self.img2img = img2img

    def save(self, image, job: ImageJob, *, stage: str = "", original_name: str | None = None) -> Path:
        """Write `image` under sd-scripts' name for it.

        `stage` is the high-resolution fix's "0" (first stage) or "1" (final), placed as sd-scripts places it
        (`im_{time}_1{NNN}_{seed}.png`, `im_1{NNNNNN}.png`); `original_name` (--use_original_file_name) names
        the image after its img2img source instead: `NAME.png`, or `NAME_1.png`, ... when that exists.
        """
        if original_name is not None:
            name = _first_free(self.outdir, Path(original_name).stem)
        elif self.sequential:
            # numbered by the job, so both high-resolution stages of one image share its number
            name = f"im_{stage}{sequential_filename(self.number + job.index)[3:]}"
        else:
            name = gen_img_filename(job, timestamp())
            if stage:
                ts, rest = name[3:].split("_", 1)
                name = f"im_{ts}_{stage}{rest}"
        parameters, extra = image_parameters(job, family=self.family, model_name=self.model_name,
                                             clip_skip=self.clip_skip, ti_hashes=self.ti_hashes, img2img=self.img2img)
        return save_png(image, self.outdir / name, parameters, extra)


def _first_free(folder: Path, stem: str) -> str:
    """`stem.png`, or the first `stem_N.png` not yet in `folder` (sd-scripts overwrote; a run never overwrites itself here)."""
    name, n = f"{stem}.png", 0
    while (folder / name).exists():
        n += 1
        name = f"{stem}_{n}.png"
    return name
