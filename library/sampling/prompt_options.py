"""Prompt lines with sd-scripts' inline options, and the prompt files that hold them.

A line is `prompt text --n negative text --w 512 --h 768 --s 28 --l 7.5 --d 42`: options in any order, each
value running until the next ` --x`. `--seed` is accepted for `--d` (sd-scripts silently ignores it, which users
do not expect). Files are text (one prompt a line, `#` comments and blank lines skipped), or sd-scripts' TOML
(`[prompt]` defaults + `[[prompt.subset]]`) and JSON (a list of objects) forms for `--sample_prompts`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from library.errors import UserError
from library.sampling.samplers import SAMPLER_NAMES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSpec:
    """One prompt and the settings it overrides; None means "use the run's default"."""

    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    scale: float | None = None
    negative_scale: float | None = None
    seeds: tuple[int, ...] = ()  # `--d 1,2,3`: one per image of this prompt; empty: random
    sampler: str | None = None
    strength: float | None = None  # img2img / inpainting
    # SDXL size/crop conditioning (sd-scripts' --ow --oh --nw --nh --ct --cl)
    original_width: int | None = None
    original_height: int | None = None
    original_width_negative: int | None = None
    original_height_negative: int | None = None
    crop_top: int | None = None
    crop_left: int | None = None
    # Deep Shrink / Gradual Latent overrides (sd-scripts' --dsd1 --dst1 --dsd2 --dst2 --dsr, --glt --glr --gle
    # --gls --glsn --glus); any one of a group switches that feature on for this prompt
    ds_depth_1: int | None = None
    ds_timesteps_1: int | None = None
    ds_depth_2: int | None = None
    ds_timesteps_2: int | None = None
    ds_ratio: float | None = None
    gl_timesteps: int | None = None
    gl_ratio: float | None = None
    gl_every_n_steps: int | None = None
    gl_ratio_step: float | None = None
    gl_s_noise: float | None = None
    gl_unsharp: str | None = None
    source: str | None = None  # "prompts.txt line 3", for messages

    @property
    def seed(self) -> int | None:
        return self.seeds[0] if self.seeds else None


def _int(text: str) -> int:
    return int(text)


def _steps(text: str) -> int:
    return max(1, min(1000, int(text)))  # sd-scripts clamps steps to 1..1000


def _seeds(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _sampler(text: str) -> str:
    name = text.lower()
    if name not in SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {text!r}; valid: {', '.join(SAMPLER_NAMES)}")
    return name


def _unsharp(text: str) -> str:
    from library.sampling.gradual_latent import parse_unsharp

    try:
        parse_unsharp(text, "--glus")
    except UserError as err:
        raise ValueError(str(err)) from None
    return text


# option -> (PromptSpec field, value parser, help)
OPTIONS: dict[str, tuple[str, Callable[[str], object], str]] = {
    "n": ("negative_prompt", str, "negative prompt"),
    "w": ("width", _int, "width"),
    "h": ("height", _int, "height"),
    "s": ("steps", _steps, "steps"),
    "d": ("seeds", _seeds, "seed (gen_img: comma-separated seeds, one per image)"),
    "seed": ("seeds", _seeds, "same as --d"),
    "l": ("scale", float, "CFG scale"),
    "nl": ("negative_scale", _optional_float, "negative prompt scale (gen_img)"),
    "ss": ("sampler", _sampler, "sampler"),
    "t": ("strength", float, "img2img strength (gen_img)"),
    "ow": ("original_width", _int, "SDXL original width"),
    "oh": ("original_height", _int, "SDXL original height"),
    "nw": ("original_width_negative", _int, "SDXL original width for the negative prompt"),
    "nh": ("original_height_negative", _int, "SDXL original height for the negative prompt"),
    "ct": ("crop_top", _int, "SDXL crop top"),
    "cl": ("crop_left", _int, "SDXL crop left"),
    "dsd1": ("ds_depth_1", _int, "Deep Shrink depth 1"),
    "dst1": ("ds_timesteps_1", _int, "Deep Shrink timesteps 1"),
    "dsd2": ("ds_depth_2", _int, "Deep Shrink depth 2"),
    "dst2": ("ds_timesteps_2", _int, "Deep Shrink timesteps 2"),
    "dsr": ("ds_ratio", float, "Deep Shrink ratio"),
    "glt": ("gl_timesteps", _int, "Gradual Latent start timestep"),
    "glr": ("gl_ratio", float, "Gradual Latent start ratio"),
    "gle": ("gl_every_n_steps", _int, "Gradual Latent every n steps"),
    "gls": ("gl_ratio_step", float, "Gradual Latent ratio step"),
    "glsn": ("gl_s_noise", float, "Gradual Latent s_noise"),
    "glus": ("gl_unsharp", _unsharp, "Gradual Latent unsharp mask ksize,sigma,strength[,target_x]"),
}

# sd-scripts options that this tool knows but does not implement
UNSUPPORTED = {
    "cn": "ControlNet images",
    "c": "CLIP-guidance prompts",
    "am": "additional-network multipliers",
    "f": "per-prompt file names",
}

# ` --name` where name is a word; the value is whatever follows up to the next such option
_OPTION = re.compile(r"(?:^|\s)--([A-Za-z_][A-Za-z0-9_]*)(?=\s|$)")


def _where(line_no: int | None, source: str | None) -> str:
    if source and line_no is not None:
        return f"{source} line {line_no}"
    if line_no is not None:
        return f"prompt line {line_no}"
    return source or "prompt"


def _problem(message: str, strict: bool) -> None:
    if strict:
        raise UserError(message)
    logger.warning("%s (ignored)", message)


def parse_prompt_line(line: str, line_no: int | None = None, *, source: str | None = None, strict: bool = False) -> PromptSpec:
    """Parse `prompt --n neg --w 512 ...` into a PromptSpec.

    An unknown or unsupported option, a bad value or an option without a value raises UserError naming the line
    and option when `strict` (gen_img's --prompt), and is logged as a warning naming the file and line and skipped
    otherwise (prompt files of gen_img and the trainer, as sd-scripts does).
    """
    where = _where(line_no, source)
    line = line.strip()
    matches = list(_OPTION.finditer(line))
    prompt = line[: matches[0].start()].strip() if matches else line
    values: dict[str, object] = {}
    for i, match in enumerate(matches):
        name = match.group(1)
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        raw = line[match.end() : end].strip()
        key = name.lower()
        if key in UNSUPPORTED:
            _problem(f"{where}: option --{name} ({UNSUPPORTED[key]}) is not supported by this tool", strict)
            continue
        if key not in OPTIONS:
            known = ", ".join(f"--{k}" for k in OPTIONS)
            _problem(f"{where}: unknown option --{name}; prompt options are {known}", strict)
            continue
        field_name, parse, what = OPTIONS[key]
        if not raw:
            # `a cat --n` is a typo or a cut line, never an intended empty value: report it like a bad value
            _problem(f"{where}: option --{name} ({what}) has no value", strict)
            continue
        try:
            value = parse(raw)
            if field_name == "seeds" and not value:
                raise ValueError("no seed given")
        except ValueError as err:
            _problem(f"{where}: bad value {raw!r} for --{name} ({what}): {err}", strict)
            continue
        values[field_name] = value
    return PromptSpec(prompt=prompt, source=where, **values)


# sd-scripts' keys in TOML/JSON prompt files -> PromptSpec fields
_DICT_KEYS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "width": "width",
    "height": "height",
    "sample_steps": "steps",
    "scale": "scale",
    "seed": "seeds",
    "sample_sampler": "sampler",
    # tolerated aliases (the same names as the prompt-line options' fields)
    "steps": "steps",
    "sampler": "sampler",
    "negative_scale": "negative_scale",
    "strength": "strength",
}
_IGNORED_KEYS = {"enum", "subset"}


def prompt_from_dict(data: dict, where: str, *, strict: bool = False) -> PromptSpec:
    """A PromptSpec from one sd-scripts prompt dict (`prompt`, `negative_prompt`, `sample_steps`, ...)."""
    if "prompt" not in data:
        raise UserError(f"{where}: no 'prompt' key (keys: {', '.join(sorted(data)) or 'none'})")
    values: dict[str, object] = {}
    for key, value in data.items():
        if key in _IGNORED_KEYS:
            continue
        if key not in _DICT_KEYS:
            _problem(f"{where}: unknown key {key!r}; known keys are {', '.join(k for k in _DICT_KEYS)}", strict)
            continue
        field_name = _DICT_KEYS[key]
        try:
            values[field_name] = _convert_dict_value(field_name, value)
        except (TypeError, ValueError) as err:
            _problem(f"{where}: bad value {value!r} for {key!r}: {err}", strict)
    return PromptSpec(source=where, **values)


def _convert_dict_value(field_name: str, value):
    if field_name in ("prompt", "negative_prompt"):
        return "" if value is None else str(value)
    if field_name == "seeds":
        if value is None:
            return ()
        return (int(value),) if not isinstance(value, (list, tuple)) else tuple(int(v) for v in value)
    if field_name in ("width", "height"):
        return int(value)
    if field_name == "steps":
        return _steps(str(int(value)))
    if field_name == "sampler":
        return _sampler(str(value))
    if field_name == "negative_scale":
        return None if value is None else float(value)
    return float(value)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"prompt file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"prompt file {path} is a folder, not a file") from None
    except UnicodeDecodeError as err:
        raise UserError(f"prompt file {path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise UserError(f"cannot read prompt file {path}: {err.strerror or err}") from None


def parse_prompt_lines(text: str, *, source: str | None = None, strict: bool = False) -> list[PromptSpec]:
    """Prompts from text: one a line; blank lines and lines starting with `#` are skipped."""
    specs = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        spec = parse_prompt_line(stripped, line_no, source=source, strict=strict)
        if not spec.prompt and strict:
            raise UserError(f"{spec.source}: the line has options but no prompt text")
        specs.append(spec)
    return specs


def parse_prompt_file(path: str | Path, *, strict: bool = False) -> list[PromptSpec]:
    """Prompts from a .txt (one a line), .toml or .json file, as sd-scripts' --sample_prompts reads them."""
    path = Path(path)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return _parse_toml(text, path, strict)
    if suffix == ".json":
        return _parse_json(text, path, strict)
    return parse_prompt_lines(text, source=str(path), strict=strict)


def _parse_toml(text: str, path: Path, strict: bool) -> list[PromptSpec]:
    import toml

    try:
        data = toml.loads(text)
    except toml.TomlDecodeError as err:
        raise UserError(f"prompt file {path} is not valid TOML: {err}") from None
    table = data.get("prompt")
    if not isinstance(table, dict) or not isinstance(table.get("subset"), list):
        raise UserError(f"prompt file {path}: expected a [prompt] table with [[prompt.subset]] entries, as sd-scripts reads")
    shared = {k: v for k, v in table.items() if k != "subset"}
    specs = []
    for i, subset in enumerate(table["subset"], start=1):
        if not isinstance(subset, dict):
            raise UserError(f"prompt file {path}: [[prompt.subset]] number {i} is not a table")
        specs.append(prompt_from_dict({**shared, **subset}, f"{path} [[prompt.subset]] {i}", strict=strict))
    return specs


def _parse_json(text: str, path: Path, strict: bool) -> list[PromptSpec]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"prompt file {path} is not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise UserError(f"prompt file {path}: expected a JSON list of prompt objects or prompt lines")
    specs = []
    for i, item in enumerate(data, start=1):
        where = f"{path} item {i}"
        if isinstance(item, str):
            specs.append(parse_prompt_line(item, source=where, strict=strict))
        elif isinstance(item, dict):
            specs.append(prompt_from_dict(item, where, strict=strict))
        else:
            raise UserError(f"{where}: expected an object or a string, got {type(item).__name__}")
    return specs

