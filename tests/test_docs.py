"""Every flag of every entry script is documented, and the README keeps its two-command quickstart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import gen_img
from library.training.parser import build_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = Path(__file__).resolve().parents[1] / "README.md"


def _flags(parser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings if opt.startswith("--") and opt != "--help"}


def _documented() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("parser", [build_parser(sdxl=False), build_parser(sdxl=True), gen_img.setup_parser()],
                         ids=["train_textual_inversion", "sdxl_train_textual_inversion", "gen_img"])
def test_every_flag_is_documented(parser):
    text = _documented()
    missing = sorted(f for f in _flags(parser) if not re.search(re.escape(f) + r"(?![\w-])", text))
    assert not missing, f"flags missing from docs/: {missing}"


def test_readme_opens_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    quickstart = text.split("## Quickstart", 1)[1].split("##", 1)[0]
    assert "make demo" in quickstart and "make test" in quickstart
