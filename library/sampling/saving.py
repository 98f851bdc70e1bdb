"""Writing generated images: sd-scripts' file names, PNG metadata, and the trainer's sample images.

gen_img names:  `im_{YYYYmmddHHMMSS}_{index:03d}_{seed}.png`, or `im_{n:06d}.png` with --sequential_file_name.
Sample images:  `OUTPUT_DIR/sample/[NAME_]{step:06d}_{prompt:02d}_{YYYYmmddHHMMSS}[_{seed}].png`
                (`e{epoch:06d}` instead of the step when sampled at an epoch's end; the seed only when the prompt
                gave one), exactly as sd-scripts names them.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from library import __version__
from library.atomic import atomic_path
from library.tokens import contains_token
from library.sampling.generate import (
    GenerationDefaults,
    ImageJob,
    ImageRenderer,
    SamplingModel,
    SeedSource,
    plan_images,
)
from library.sampling.png_info import format_parameters, format_ti_hashes, make_pnginfo
from library.sampling.prompt_options import PromptSpec
from library.sampling.samplers import a1111_sampler_name


def timestamp() -> str:
    return time.strftime("%Y%m%d%H%M%S", time.localtime())


def gen_img_filename(job: ImageJob, ts: str) -> str:
    return f"im_{ts}_{job.index:03d}_{job.seed}.png"


def next_sequential_number(outdir: Path, staged: bool = False) -> int:
    """1 + the highest `im_NNNNNN.png` already in `outdir`, so a second run does not overwrite the first.

    `staged`: the high-resolution fix's names, `im_0NNNNNN.png` / `im_1NNNNNN.png` (sd-scripts' stage digit first).
    """
    pattern = r"im_[01](\d{6})\.png" if staged else r"im_(\d{6,})\.png"
    numbers = [int(m.group(1)) for p in outdir.glob("im_*.png") if (m := re.fullmatch(pattern, p.name))]
    return max(numbers, default=0) + 1


def sequential_filename(number: int) -> str:
    return f"im_{number:06d}.png"


def sample_filename(name: str | None, step: int, prompt_index: int, ts: str, seed: int | None, epoch: int | None = None) -> str:
    counter = f"e{epoch:06d}" if epoch is not None else f"{step:06d}"
    seed_part = "" if seed is None else f"_{seed}"
    return f"{name + '_' if name else ''}{counter}_{prompt_index:02d}_{ts}{seed_part}.png"


def used_embeddings(job: ImageJob, ti_hashes: dict[str, str]) -> dict[str, str]:
    """The embeddings (trigger -> hash) whose trigger word appears in the prompt or negative prompt."""
    text = f"{job.prompt}\n{job.negative_prompt}"
    return {t: h for t, h in ti_hashes.items() if contains_token(text, t)}  # whole word, exact case: as prompts are encoded


def image_parameters(job: ImageJob, *, family: str, model_name: str = "", clip_skip: int | None = None,
                     ti_hashes: dict[str, str] | None = None, img2img: bool = False) -> tuple[str, dict[str, str]]:
    """The A1111 `parameters` text and sd-scripts' own text keys for one image."""
    settings = {
        "Steps": job.steps,
        "Sampler": a1111_sampler_name(job.sampler),
        "CFG scale": job.scale,
        "Seed": job.seed,
        "Size": f"{job.width}x{job.height}",
        "Model": model_name or None,
        "Denoising strength": job.strength if img2img else None,
        "Clip skip": clip_skip if clip_skip and clip_skip > 1 else None,
        "Negative scale": job.negative_scale,
        "TI hashes": format_ti_hashes(used_embeddings(job, ti_hashes or {})),
        "Version": f"ti-suite {__version__}",
    }
    parameters = format_parameters(job.prompt, job.negative_prompt, settings)
    extra = {"prompt": job.prompt, "seed": str(job.seed), "sampler": job.sampler, "steps": str(job.steps),
             "scale": str(job.scale)}
    if job.negative_prompt:
        extra["negative-prompt"] = job.negative_prompt
    if job.negative_scale is not None:
        extra["negative-scale"] = str(job.negative_scale)
    if family == "sdxl":
        extra.update({"original-height": str(job.original_size[0]), "original-width": str(job.original_size[1]),
                      "original-height-negative": str(job.negative_original_size[0]),
                      "original-width-negative": str(job.negative_original_size[1]),
                      "crop-top": str(job.crop_top_left[0]), "crop-left": str(job.crop_top_left[1])})
    return parameters, extra


def save_png(image: Image.Image, path: Path, parameters: str, extra: dict[str, str]) -> Path:
    """Write the PNG with its metadata; it appears under its name complete or not at all."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=make_pnginfo(parameters, extra))
    return path


@contextlib.contextmanager
def _preserved_rng():
    """Sampling must not change the training run's random stream (sd-scripts restores it too)."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def _on_device(modules: list[torch.nn.Module], device: torch.device):
    """Move modules to `device` for the duration (e.g. a VAE kept on the CPU during training)."""
    moved = []
    for module in modules:
        current = next(module.parameters()).device
        if current != device:
            module.to(device)
            moved.append((module, current))
    try:
        yield
    finally:
        for module, current in moved:
            module.to(current)


def sample_images(
    model: SamplingModel,
    specs: list[PromptSpec],
    output_dir: str | Path,
    name: str | None,
    step: int,
    *,
    epoch: int | None = None,
    defaults: GenerationDefaults | None = None,
    sampler: str | None = None,
    seed: int | None = None,
    prompt_rewrite: Callable[[str], str] | None = None,
    clip_skip: int | None = None,
    max_embeddings_multiples: int = 3,
    device: torch.device | str | None = None,
    ti_hashes: dict[str, str] | None = None,
) -> list[Path]:
    """The trainer's sample images: one per prompt, written into `output_dir` (the trainer passes OUTPUT_DIR/sample).

    Names are sd-scripts': `[NAME_]{step:06d}_{i:02d}_{time}[_{seed}].png`, with `e{epoch:06d}` instead of the
    step when `epoch` is given (pass it only when sampling at an epoch's end). `sampler` overrides
    `defaults.sampler` (--sample_sampler). Prompts without `--d` get random seeds, or, with `seed`, seeds drawn
    from a generator seeded with it (the same seeds at every sampling, so samples compare across steps).
    `model` holds the unwrapped training models; the VAE and text encoders are moved to `device` (default: the
    UNet's) for the duration, and the torch RNG state is restored afterwards.
    """
    defaults = defaults or GenerationDefaults()
    if sampler is not None:
        defaults = replace(defaults, sampler=sampler)
    device = torch.device(device) if device is not None else next(model.unet.parameters()).device
    renderer = ImageRenderer(model, clip_skip=clip_skip, max_embeddings_multiples=max_embeddings_multiples,
                             prompt_rewrite=prompt_rewrite)
    jobs = plan_images(specs, defaults, seeds=SeedSource(seed))
    paths = []
    with _preserved_rng(), _on_device([model.vae, *model.text_encoders], device), torch.no_grad():
        for job, image in renderer.render(jobs, batch_size=1):
            filename = sample_filename(name, step, job.prompt_index, timestamp(), job.seed if job.seed_given else None, epoch)
            parameters, extra = image_parameters(job, family=model.family, model_name=model.source,
                                                 clip_skip=clip_skip, ti_hashes=ti_hashes)
            paths.append(save_png(image, Path(output_dir) / filename, parameters, extra))
    renderer.warn_truncated()
    return paths
