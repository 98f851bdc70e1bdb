"""Caption files and caption processing, with sd-scripts' meaning.

Reading: a caption file sits next to its image with the subset's `caption_extension`; when there is none the
caption falls back to the subset's `class_tokens` (DreamBooth style), else to the image's file stem.

Processing (`process_caption`) is a pure function of the raw caption, the options, an explicit `random.Random`
and the training step, applied in sd-scripts' order:
prefix/suffix -> caption dropout -> wildcard / first line -> split into fixed | shuffled | fixed-suffix parts ->
token warmup (keep the first N shuffled-part tags) -> shuffle -> tag dropout -> join with ", " ->
secondary separator replaced by the caption separator.
"""

from __future__ import annotations

import logging
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

# tried in order; the last one never fails, so a caption file is always readable
_ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1")

_WILDCARD = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True)
class CaptionOptions:
    """The subset keys that shape a caption (sd-scripts names and defaults)."""

    shuffle_caption: bool = False
    caption_separator: str = ","
    keep_tokens: int = 0
    keep_tokens_separator: Optional[str] = None
    secondary_separator: Optional[str] = None
    enable_wildcard: bool = False
    caption_prefix: Optional[str] = None
    caption_suffix: Optional[str] = None
    token_warmup_min: int = 1
    token_warmup_step: float = 0
    # Not accepted by sd-scripts' TI dataset schema, but the same machinery: A1111's "drop out tags" and
    # whole-caption dropout. Read from the subset when the config layer provides them.
    caption_tag_dropout_rate: float = 0.0
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    protected_token: Optional[str] = None  # the trained token string: tag dropout never drops a tag holding it

    @classmethod
    def from_subset(cls, subset) -> "CaptionOptions":
        """Options from a `SubsetParams` (missing optional keys keep their defaults)."""
        return cls(
            shuffle_caption=subset.shuffle_caption,
            caption_separator=subset.caption_separator or ",",
            keep_tokens=subset.keep_tokens,
            keep_tokens_separator=subset.keep_tokens_separator or None,
            secondary_separator=subset.secondary_separator or None,
            enable_wildcard=subset.enable_wildcard,
            caption_prefix=subset.caption_prefix or None,
            caption_suffix=subset.caption_suffix or None,
            token_warmup_min=subset.token_warmup_min,
            token_warmup_step=subset.token_warmup_step,
            caption_tag_dropout_rate=getattr(subset, "caption_tag_dropout_rate", 0.0) or 0.0,
            caption_dropout_rate=getattr(subset, "caption_dropout_rate", 0.0) or 0.0,
            caption_dropout_every_n_epochs=getattr(subset, "caption_dropout_every_n_epochs", 0) or 0,
        )

    @property
    def is_random(self) -> bool:
        """True if two calls with different RNG states can give different captions."""
        return bool(
            self.shuffle_caption
            or self.enable_wildcard
            or self.caption_tag_dropout_rate > 0
            or self.caption_dropout_rate > 0
        )


# ---------------------------------------------------------------------------------------------------------------
# caption files


def read_text_file(path: str | Path) -> str:
    """The file's text; UTF-8 (with or without BOM) or, with a warning, cp1252 / latin-1. Never raises on bytes."""
    data = Path(path).read_bytes()
    for i, encoding in enumerate(_ENCODINGS):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if i >= 2:
            logger.warning("%s is not UTF-8; read it as %s. Save it as UTF-8 to silence this warning.", path, encoding)
        return text.lstrip("\ufeff")
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def caption_from_text(text: str, enable_wildcard: bool) -> Optional[str]:
    """The caption a caption file holds: its first non-empty line, or with wildcards all non-empty lines (one is
    picked per sample). Returns None for a file with no text."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    return "\n".join(lines) if enable_wildcard else lines[0]


def caption_file_candidates(image_path: str | Path, extension: str) -> list[Path]:
    """`<stem><ext>` next to the image, then the same without a face-crop suffix `_X_Y_W_H` (as sd-scripts)."""
    if extension and not extension.startswith("."):
        extension = "." + extension
    image_path = Path(image_path)
    candidates = [image_path.with_name(image_path.stem + extension)]
    tokens = image_path.stem.split("_")
    if len(tokens) >= 5:
        candidates.append(image_path.with_name("_".join(tokens[:-4]) + extension))
    return candidates


def fallback_caption(image_path: str | Path, class_tokens: Optional[str]) -> str:
    """Caption used when an image has none: the class tokens if set, else the image file's stem."""
    if class_tokens:
        return class_tokens
    return Path(image_path).stem


# ---------------------------------------------------------------------------------------------------------------
# processing


def _choose_wildcards(caption: str, rng: random.Random) -> str:
    # `{a|b|c}` picks one option; `{{` and `}}` are literal braces (escaped as sd-scripts does)
    open_mark, close_mark = "\u2985", "\u2986"
    while open_mark in caption or close_mark in caption:
        open_mark += "\u2985"
        close_mark += "\u2986"
    caption = caption.replace("{{", open_mark).replace("}}", close_mark)
    caption = _WILDCARD.sub(lambda m: rng.choice(m.group(1).split("|")), caption)
    return caption.replace(open_mark, "{").replace(close_mark, "}")


def _split_tags(text: str, separator: str) -> list[str]:
    return [t.strip() for t in text.split(separator) if t.strip()]


def warmup_tag_count(num_tags: int, step: int, warmup_min: int, warmup_steps: int) -> int:
    """How many shuffled-part tags token warmup keeps at `step` (all of them once warmup is over)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return num_tags
    return math.floor(step * ((num_tags - warmup_min) / warmup_steps)) + warmup_min


def resolve_warmup_steps(token_warmup_step: float, max_train_steps: int) -> int:
    """`token_warmup_step` below 1 is a fraction of the run's steps (sd-scripts)."""
    if token_warmup_step < 1:
        return math.floor(token_warmup_step * max_train_steps)
    return int(token_warmup_step)


def _keeps_tag(tag: str, opts: CaptionOptions, rng: random.Random) -> bool:
    # one draw per tag whether or not it is protected, so the token's presence does not shift later draws
    kept = rng.random() >= opts.caption_tag_dropout_rate
    if opts.protected_token and re.search(r"(?<!\w)" + re.escape(opts.protected_token) + r"(?!\w)", tag):
        return True
    return kept


def process_caption(
    caption: str,
    opts: CaptionOptions,
    rng: random.Random,
    *,
    step: int = 0,
    max_train_steps: int = 0,
    epoch: int = 0,
) -> str:
    """Apply the subset's caption options to one raw caption; randomness comes only from `rng`."""
    if opts.caption_prefix:
        caption = opts.caption_prefix + " " + caption
    if opts.caption_suffix:
        caption = caption + " " + opts.caption_suffix

    dropped = opts.caption_dropout_rate > 0 and rng.random() < opts.caption_dropout_rate
    every_n = opts.caption_dropout_every_n_epochs
    if dropped or (every_n > 0 and epoch % every_n == 0):
        return ""

    if opts.enable_wildcard:
        if "\n" in caption:
            caption = rng.choice(caption.split("\n"))
        caption = _choose_wildcards(caption, rng)
    else:
        caption = caption.split("\n")[0]

    sep = opts.caption_separator
    keep_sep = opts.keep_tokens_separator
    warmup_steps = resolve_warmup_steps(opts.token_warmup_step, max_train_steps) if opts.token_warmup_step else 0
    has_keep_sep = bool(keep_sep) and keep_sep in caption
    # sd-scripts only splits into tags when something acts on tags; we also split when the keep-tokens
    # separator is present, so that a literal "|||" never reaches the text encoder.
    if opts.shuffle_caption or warmup_steps > 0 or opts.caption_tag_dropout_rate > 0 or has_keep_sep:
        fixed: list[str] = []
        suffix: list[str] = []
        if has_keep_sep:
            fixed_part, flex_part = caption.split(keep_sep, 1)
            if keep_sep in flex_part:
                flex_part, suffix_part = flex_part.split(keep_sep, 1)
                suffix = _split_tags(suffix_part, sep)
            fixed = _split_tags(fixed_part, sep)
            flex = _split_tags(flex_part, sep)
        else:
            flex = _split_tags(caption, sep)
            if opts.keep_tokens > 0:
                fixed, flex = flex[: opts.keep_tokens], flex[opts.keep_tokens :]

        if warmup_steps > 0:
            flex = flex[: warmup_tag_count(len(flex), step, opts.token_warmup_min, warmup_steps)]
        if opts.shuffle_caption:
            rng.shuffle(flex)
        if opts.caption_tag_dropout_rate > 0:
            flex = [t for t in flex if _keeps_tag(t, opts, rng)]
        caption = ", ".join(fixed + flex + suffix)

    if opts.secondary_separator:
        caption = caption.replace(opts.secondary_separator, sep)
    return caption
