"""`key=value` option lists (`--optimizer_args`, `--lr_scheduler_args`) parsed into keyword arguments."""

from __future__ import annotations

import ast
from typing import Any, Iterable

from library.errors import UserError


def parse_kwargs_list(items: Iterable[str] | None, flag: str) -> dict[str, Any]:
    """`["weight_decay=0.01", "betas=0.9,0.99"]` -> `{"weight_decay": 0.01, "betas": (0.9, 0.99)}`.

    Values are Python literals as in sd-scripts (`0.9,0.99` is a tuple, `[0.9,0.99]` a list, `True`, `None`);
    `true`/`false`/`none` in any case are accepted too, and anything else stays a plain string.
    """
    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"{flag}: '{item}' is not of the form key=value (example: {flag} weight_decay=0.01 betas=0.9,0.99)")
        kwargs[key] = _literal(text.strip())
    return kwargs


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "none":
            return None
        return text
