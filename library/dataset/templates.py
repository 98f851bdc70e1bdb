"""Prompt templates for textual inversion.

Two kinds:
- the original TI paper's object and style lists (`--use_object_template` / `--use_style_template`): the image's
  caption is replaced by a random template with `{}` filled by the token string, as sd-scripts does;
- A1111 template files: one template per line, `[name]` becomes the token string and `[filewords]` the image's
  processed caption (so tag shuffle/dropout apply to `[filewords]`).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from library.dataset.captions import read_text_file
from library.errors import UserError

# "imagenet_templates_small" of the Textual Inversion paper's code (Gal et al., 2022)
OBJECT_TEMPLATES = [
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a photo of a dirty {}",
    "a dark photo of the {}",
    "a photo of my {}",
    "a photo of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a photo of the {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a photo of the clean {}",
    "a rendition of a {}",
    "a photo of a nice {}",
    "a good photo of a {}",
    "a photo of the nice {}",
    "a photo of the small {}",
    "a photo of the weird {}",
    "a photo of the large {}",
    "a photo of a cool {}",
    "a photo of a small {}",
]

# "imagenet_style_templates_small" of the same code
STYLE_TEMPLATES = [
    "a painting in the style of {}",
    "a rendering in the style of {}",
    "a cropped painting in the style of {}",
    "the painting in the style of {}",
    "a clean painting in the style of {}",
    "a dirty painting in the style of {}",
    "a dark painting in the style of {}",
    "a picture in the style of {}",
    "a cool painting in the style of {}",
    "a close-up painting in the style of {}",
    "a bright painting in the style of {}",
    "a cropped painting in the style of {}",
    "a good painting in the style of {}",
    "a close-up painting in the style of {}",
    "a rendition in the style of {}",
    "a nice painting in the style of {}",
    "a small painting in the style of {}",
    "a weird painting in the style of {}",
    "a large painting in the style of {}",
]


# AUTOMATIC1111's [filewords] for an image without a caption file: the file name without extension and without
# its leading numbers, dashes and the spaces after them (modules/textual_inversion/dataset.py, re_numbers_at_start)
A1111_LEADING_NUMBERS = re.compile(r"^[-\d]+\s*")


def filewords_from_file_name(path: str | Path) -> str:
    """`00012-a red car.png` -> `a red car`: what A1111 puts in [filewords] when there is no caption file."""
    return A1111_LEADING_NUMBERS.sub("", Path(path).stem)


def a1111_filewords_templates() -> list[str]:
    """The object templates with the caption after the token ("a photo of a [name], [filewords]"), in the manner
    of AUTOMATIC1111's subject_filewords.txt: for captions written without the token, as A1111 users write them."""
    return [t.replace("{}", "[name]") + ", [filewords]" for t in OBJECT_TEMPLATES]


def builtin_templates(kind: str) -> list[str]:
    """`kind` is "object" or "style"."""
    if kind == "object":
        return list(OBJECT_TEMPLATES)
    if kind == "style":
        return list(STYLE_TEMPLATES)
    raise ValueError(f"unknown template kind {kind!r}; expected 'object' or 'style'")


def read_template_file(path: str | Path, flag: str = "--template_file") -> list[str]:
    """A1111 template file: one template per non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag}: template file {path} does not exist")
    templates = [line.strip() for line in read_text_file(path).splitlines() if line.strip()]
    if not templates:
        raise UserError(f"{flag}: template file {path} has no templates (one per line, e.g. 'a photo of [name]')")
    return templates


def fill_template(template: str, token_string: str, caption: str) -> str:
    """`[name]` -> token string, `[filewords]` -> caption (A1111); otherwise `{}` -> token string (TI paper)."""
    if "[name]" in template or "[filewords]" in template:
        return template.replace("[name]", token_string).replace("[filewords]", caption)
    return template.replace("{}", token_string)


def apply_templates(templates: list[str], token_string: str, caption: str, rng: random.Random) -> str:
    """A random template from `templates`, filled for this caption."""
    return fill_template(rng.choice(templates), token_string, caption)
