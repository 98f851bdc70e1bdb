"""Guard: every flag of every script is read by the code, or is on the one list of compatibility-only flags.

A flag that parses but that no code reads does nothing, silently; tests/test_docs.py only checks that flags are
documented, which is how such flags slipped through before. "Read" means the flag's dest appears as an attribute
(`args.dest`, `opts.dest`, ...) or a quoted name (`getattr(args, "dest")`) in the code under library/, tools/ or an
entry script, outside the modules that only define, check or echo flags.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import gen_img
from library.sampling.gen_img_arguments import NOT_IN_SUITE
from library.training.compat_flags import COMPAT_DESTS
from library.training.flag_rules import REFUSED_FLAGS
from library.training.sd_scripts_flags import REFUSED
from library.training.parser import build_parser
from tests.helpers.tools import load_tool

REPO = Path(__file__).resolve().parents[1]
# where flags are defined, checked against each other or written back; a dest named only there is not "read"
NOT_READERS = {
    "library/training/arguments.py", "library/dataset/arguments.py", "library/training/flag_rules.py",
    "library/training/compat_flags.py",
}  # fmt: skip


def _code(leave_out: set[str] = frozenset()) -> str:
    files = [*REPO.glob("*.py"), *(REPO / "library").rglob("*.py"), *(REPO / "tools").rglob("*.py")]
    skipped = NOT_READERS | set(leave_out)
    return "\n".join(p.read_text(encoding="utf-8") for p in files if p.relative_to(REPO).as_posix() not in skipped)


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    dests = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                dests |= _dests(sub)
        elif action.option_strings and action.dest != "help":
            dests.add(action.dest)
    return dests


# flags parsed only to be refused with a reason when given: flag_rules reads them
REFUSED_DESTS = set(REFUSED_FLAGS) | {f.dest for f in REFUSED} | {flag.removeprefix("--") for flag in NOT_IN_SUITE}
# gen_img.py's own flags of the same name (its --full_fp16 is not the trainer's) are read by its own code
GEN_IMG_CODE = {"library/sampling/gen_img_arguments.py"}


def _is_read(dest: str, code: str) -> bool:
    return re.search(rf"\.{dest}\b|[\"']{dest}[\"']", code) is not None


PARSERS = {
    "train_textual_inversion.py": lambda: build_parser(sdxl=False),
    "sdxl_train_textual_inversion.py": lambda: build_parser(sdxl=True),
    "gen_img.py": gen_img.setup_parser,
    "tools/embedding.py": lambda: load_tool("embedding").build_parser(),
}


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_every_flag_is_read_or_listed_as_compatibility_only(script):
    code = _code()
    unread = sorted(d for d in _dests(PARSERS[script]()) if d not in COMPAT_DESTS | REFUSED_DESTS and not _is_read(d, code))
    assert not unread, (
        f"{script}: flags that no code reads: {['--' + d for d in unread]}. Read them, refuse them in flag_rules "
        "(REFUSED_FLAGS), or list them in library/training/compat_flags.py (--help then says 'accepted for "
        "compatibility, no effect')"
    )


def test_compatibility_flags_are_marked_in_help_and_read_nowhere():
    from library.training.compat_flags import COMPAT_HELP

    parser = build_parser(sdxl=True)
    code = _code(leave_out=GEN_IMG_CODE | {"gen_img.py"})
    for action in parser._actions:
        if action.dest in COMPAT_DESTS:
            assert action.help.startswith(COMPAT_HELP), action.dest
            assert not _is_read(action.dest, code), f"--{action.dest} is read somewhere: take it off the compatibility list"


def test_the_guard_catches_a_flag_nobody_reads():
    parser = build_parser(sdxl=False)
    parser.add_argument("--a_flag_added_and_never_read", action="store_true")
    code = _code()
    assert not _is_read("a_flag_added_and_never_read", code)
    assert _is_read("max_train_steps", code) and _is_read("token_string", code)
