"""Reading a dataset config file: TOML (or JSON, as sd-scripts also allows), with syntax errors that point at the
line and column and suggest the usual fix."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Union

from library.errors import UserError


def read_config_file(path: Union[str, Path]) -> dict:
    """Parse a dataset config (.toml, or .json as sd-scripts also allows); syntax errors name line and column."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"dataset config not found: {path}")
    if path.is_dir():
        raise UserError(f"dataset config {path} is a folder; pass the .toml file")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise UserError(f"dataset config {path} must be a .toml file (or .json), as in sd-scripts")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"dataset config {path} is not UTF-8 text (bad byte at offset {err.start}); save it as UTF-8")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"JSON syntax error in {path}, line {err.lineno}, column {err.colno}: {err.msg}") from None
        if not isinstance(data, dict):
            raise UserError(f"dataset config {path} must hold a JSON object with 'general' and 'datasets'")
        return data
    toml = _toml_module()
    try:
        return toml.loads(text)
    except toml.TOMLDecodeError as err:
        raise UserError(_toml_syntax_message(path, text, err)) from None


def _toml_module():
    # tomllib (Python 3.11+) over the `toml` package: it implements TOML 1.0 and reports the exact line and column,
    # where `toml` 0.10 reports most value errors at "line 1 column 1". tomli is the same parser for Python 3.10.
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    from library.optional_deps import require

    return require("tomli", "Reading dataset TOML files on Python 3.10")


def _toml_syntax_message(path: Path, text: str, err: Exception) -> str:
    message = str(err)
    line = getattr(err, "lineno", None)
    column = getattr(err, "colno", None)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    if found:
        line, column = int(found.group(1)), int(found.group(2))
    message = getattr(err, "msg", None) or re.sub(r"\s*\(at [^)]*\)$", "", message)
    if line is None:
        return f"TOML syntax error in {path}: {message}"
    source_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    if _bad_escape(message) and "\\" in source_line[: column - 1]:
        column = source_line.rindex("\\", 0, column - 1) + 1  # tomllib points past the escape; show the backslash
    caret = "".join(c if c == "\t" else " " for c in source_line[: column - 1]) + "^"
    hint = _toml_syntax_hint(message, source_line)
    return (
        f"TOML syntax error in {path}, line {line}, column {column}: {message}{hint}\n"
        f"    {source_line}\n    {caret}"
    )


def _bad_escape(message: str) -> bool:
    return "'\\'" in message or "escape" in message.lower() or "hex value" in message


def _toml_syntax_hint(message: str, line: str) -> str:
    value = line.split("=", 1)[1].split("#", 1)[0].strip() if "=" in line else ""
    if _bad_escape(message) and '"' in line:
        return (
            "; in double quotes a backslash starts an escape: write Windows paths in single quotes, "
            "e.g. image_dir = 'C:\\images', or double each backslash"
        )
    if value in ("None", "none", "null", "Null", "NULL", "nil"):
        return "; TOML has no None/null: delete the line to use the default"
    if value in ("True", "False", "TRUE", "FALSE", "yes", "no"):
        return f"; TOML booleans are lowercase: {value.lower() in ('true', 'yes') and 'true' or 'false'}"
    if message.startswith("Invalid value") and re.fullmatch(r"[A-Za-z_./\\:][^\s]*", value or "-"):
        return f"; strings need quotes: '{value}'"
    if message.startswith("Cannot declare") and line.strip().startswith("[") and not line.strip().startswith("[["):
        return (
            "; a [table] may appear only once: write each dataset as [[datasets]] and each subset as "
            "[[datasets.subsets]]"
        )
    if message.startswith("Cannot overwrite"):
        return "; the key is set twice in the same table"
    return ""
