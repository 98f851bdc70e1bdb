"""What gen_img.py generates from: prompt lines and files, img2img images (with the prompts in their metadata), stdin."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Iterator, TextIO

from library.errors import UserError
from library.sampling.prompt_options import PromptSpec, parse_prompt_file, parse_prompt_line

logger = logging.getLogger("gen_img")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def read_prompt_specs(prompt: str | None, from_file: str | None) -> list[PromptSpec]:
    """The prompts of `--prompt` or `--from_file`.

    A malformed option (unknown, unsupported, bad or missing value) is an error in `--prompt`, and a warning
    naming the file and line in a prompt file (the option is skipped, the prompt kept), as sd-scripts reads files.
    """
    if from_file:
        specs = parse_prompt_file(from_file, strict=False)
        if not specs:
            raise UserError(f"--from_file {from_file}: no prompts in the file (only blank or # lines)")
        for spec in specs:
            if not spec.prompt:
                raise UserError(f"{spec.source}: the line has options but no prompt text")
        return specs
    if prompt is not None:
        return [parse_prompt_line(prompt, source="--prompt", strict=True)]
    return []


def load_images(path: str, flag: str) -> list:
    """One image, or every image of a folder in name order (RGB; their PNG text chunks kept in `.info`)."""
    from PIL import Image

    source = Path(path)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif source.is_file():
        files = [source]
    else:
        raise UserError(f"{flag} {path}: no such file or folder")
    if not files:
        raise UserError(f"{flag} {path}: the folder has no .png/.jpg/.jpeg/.webp images")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                rgb = image.convert("RGB")
                rgb.info.update(getattr(image, "text", {}) or {})
                rgb.filename = str(file)
                images.append(rgb)
        except OSError as err:
            raise UserError(f"{flag}: cannot read image {file}: {err}") from None
    return images


def prompts_from_images(init_images: list, mask_images: list, images_per_prompt: int):
    """sd-scripts' img2img without a prompt: each image's own prompt from its metadata, one prompt per image.

    The images (and masks) are repeated `images_per_prompt` times so that image i goes with prompt i.
    """
    from library.sampling.png_info import PARAMETERS_KEY, parse_parameters

    specs = []
    for image in init_images:
        info = image.info
        if "prompt" in info:  # sd-scripts' own keys
            prompt, negative = info["prompt"], info.get("negative-prompt")
        elif PARAMETERS_KEY in info:  # AUTOMATIC1111's
            parsed = parse_parameters(info[PARAMETERS_KEY])
            prompt, negative = parsed["prompt"], parsed["negative_prompt"] or None
        else:
            raise UserError(f"--image_path: {image.filename} has no prompt in its metadata; "
                            "give --prompt or --from_file")
        specs.append(PromptSpec(prompt, negative, source="--image_path metadata"))
    repeat = lambda images: [im for im in images for _ in range(images_per_prompt)]  # noqa: E731
    return specs, repeat(init_images), repeat(mask_images)


def read_interactive(stream: TextIO) -> Iterator[tuple[int, PromptSpec]]:
    """(line number, PromptSpec) for each prompt typed; a bad line is reported and skipped."""
    if stream.isatty():
        print("Type a prompt and press Enter (options --n --w --h --s --d --l ...); Ctrl-D to finish.", file=sys.stderr)
    for line_no, line in enumerate(stream, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            spec = parse_prompt_line(text, line_no, source="stdin", strict=True)
        except UserError as err:
            logger.error("%s", err)
            continue
        if not spec.prompt:
            logger.error("stdin line %d: options but no prompt text", line_no)
            continue
        yield line_no, spec


EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
EMBEDDING_IMAGE_SUFFIXES = (".png", ".webp")  # AUTOMATIC1111's embedding images, when they carry one


def embedding_files(paths: list[str]) -> list[Path]:
    """--textual_inversion_embeddings: files as given, folders searched recursively (like A1111's embeddings folder).

    In a folder, `.safetensors`/`.pt`/`.bin` files and PNG/WebP images that carry an embedding are taken, in path
    order; hidden files, the `_2` halves of diffusers SDXL pairs (read with their first file) and files that hold
    no embedding (a preview image, a LoRA) are left out, the last with a warning naming the file.
    """
    from library.embeddings.reader import pair_first_half, read_embedding

    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise UserError(f"--textual_inversion_embeddings {given}: no such file or folder")
        candidates = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in EMBEDDING_SUFFIXES + EMBEDDING_IMAGE_SUFFIXES)
        names = set(candidates)
        in_folder = []
        for candidate in candidates:
            first = pair_first_half(candidate)
            if first is not None and first in names:
                continue
            try:
                read_embedding(candidate, quiet=True)
            except UserError as err:
                if candidate.suffix.lower() not in EMBEDDING_IMAGE_SUFFIXES:  # images without one are just images
                    logger.warning("--textual_inversion_embeddings %s: skipped %s", given, err)
                continue
            in_folder.append(candidate)
        if not in_folder:
            raise UserError(f"--textual_inversion_embeddings {given}: the folder holds no embedding files "
                            f"({', '.join(EMBEDDING_SUFFIXES)} or PNG/WebP embedding images, searched recursively)")
        logger.info("--textual_inversion_embeddings %s: %d embedding file(s) found", given, len(in_folder))
        found.extend(in_folder)
    return found
