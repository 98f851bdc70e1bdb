"""Generation settings in PNG text chunks, in AUTOMATIC1111's `parameters` format (and sd-scripts' keys).

    a photo of mychar4, (red hat:1.2)
    Negative prompt: blurry
    Steps: 28, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 512x768, Model: sd15, TI hashes: "mychar4: 0123abcd4567"

A1111, ComfyUI loaders, image browsers and civitai read this. sd-scripts' own keys (`prompt`, `negative-prompt`,
`seed`, `steps`, `scale`, `sampler`) are written too, so its gen_img can take prompts back from our images.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

PARAMETERS_KEY = "parameters"
# `Key: value,` where value is a JSON-quoted string or runs to the next comma (A1111's own pattern)
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def quote(value) -> str:
    """A1111's quoting: values holding `,` `:` or a newline are written as JSON strings."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def format_parameters(prompt: str, negative_prompt: str | None, settings: dict) -> str:
    """The `parameters` text: prompt line, `Negative prompt:` line, then `Key: value, ...` (in dict order).

    Settings whose value is None are left out.
    """
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{key}: {quote(value)}" for key, value in settings.items() if value is not None))
    return "\n".join(lines)


def parse_parameters(text: str) -> dict:
    """Read a `parameters` text back: {"prompt", "negative_prompt", and every `Key: value` as strings}."""
    lines = text.strip().split("\n")
    settings_line = lines[-1] if len(_PARAM.findall(lines[-1])) >= 3 else None
    if settings_line is not None:
        lines = lines[:-1]
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    result = {"prompt": "\n".join(prompt_lines), "negative_prompt": "\n".join(negative_lines)}
    for key, value in _PARAM.findall(settings_line or ""):
        result[key.strip()] = unquote(value.strip())
    return result


def format_ti_hashes(hashes: dict[str, str]) -> str | None:
    """`name: hash, name2: hash2` for the `TI hashes` setting (None when there are none)."""
    return ", ".join(f"{name}: {value}" for name, value in hashes.items()) or None


def parse_ti_hashes(text: str) -> dict[str, str]:
    pairs = (part.rsplit(":", 1) for part in text.split(",") if ":" in part)
    return {name.strip(): value.strip() for name, value in pairs}


def file_short_hash(path: str | Path) -> str:
    """First 12 hex digits of the file's SHA-256: the hash A1111 shows for an embedding (`TI hashes`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def make_pnginfo(parameters: str, extra_text: dict[str, str] | None = None) -> PngInfo:
    """A PngInfo holding `parameters` and any extra text chunks (e.g. sd-scripts' keys)."""
    info = PngInfo()
    info.add_text(PARAMETERS_KEY, parameters)
    for key, value in (extra_text or {}).items():
        if value is not None:
            info.add_text(key, str(value))
    return info


def read_png_text(path: str | Path) -> dict[str, str]:
    """All text chunks of a PNG file."""
    with Image.open(path) as image:
        image.load()
        return dict(getattr(image, "text", {}) or image.info)
