"""Running an entry point the way a user does, and judging the outcome as an adversarial user would.

Every case asks the same four questions: did it exit non-zero (or do what the docs promise), was the message one
clear line naming the file, key or flag, did a Python traceback reach the user, and is the good embedding that was
already in the output folder byte-identical afterwards.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    code: int | None
    stderr: str
    escaped: BaseException | None = None  # an exception run_main let through: a traceback for the user
    stdout: str = ""  # tools that report per file (tools/embedding.py inspect) name the file there

    @property
    def error(self) -> str:
        """The text after `error: ` (run_main) or argparse's `PROG: error: ` line, up to the end of stderr."""
        for marker in ("error: ",):
            at = self.stderr.find(marker)
            if at >= 0:
                return self.stderr[at + len(marker):].strip()
        return ""


def run_in_process(main: Callable, argv: list[str]) -> Outcome:
    """An entry's main through library.cli.run_main, as `python SCRIPT ARGV` would run it, without a new process."""
    from library.cli import run_main

    buffer, out = io.StringIO(), io.StringIO()
    with redirect_stderr(buffer), redirect_stdout(out):
        try:
            code = run_main(main, argv)
        except SystemExit as exit_:  # argparse: usage line and `error:` on stderr, exit 2
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException as err:  # noqa: BLE001 - exactly what the suite looks for
            return Outcome(None, buffer.getvalue() + "".join(traceback.format_exception(err)), err, out.getvalue())
    return Outcome(code, buffer.getvalue(), stdout=out.getvalue())


def run_process(script: str, argv: list[str], env: dict[str, str] | None = None, timeout: int = 300) -> Outcome:
    """The script in a real Python process: its real exit code and everything it printed."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, str(REPO / script), *argv], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=REPO)
    return Outcome(proc.returncode, proc.stderr + proc.stdout)


def assert_refused(outcome: Outcome, *names: str, multiline: bool = False) -> None:
    """Non-zero exit, no traceback, and one line (a dataset report may list its problems) naming each of `names`."""
    assert outcome.escaped is None and "Traceback (most recent call last)" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.code not in (0, None), f"exit code {outcome.code}; stderr:\n{outcome.stderr[-3000:]}"
    message = outcome.error
    assert message, f"no error message on stderr:\n{outcome.stderr[-3000:]}"
    if not multiline:
        assert len(message.splitlines()) == 1, f"not one line:\n{message}"
    for name in names:
        assert name in message or name in outcome.stdout, f"{name!r} not named in: {message}"


def assert_accepted(outcome: Outcome) -> None:
    assert outcome.escaped is None and "Traceback (most recent call last)" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.code == 0, f"exit code {outcome.code}; stderr:\n{outcome.stderr[-3000:]}"


@dataclass
class Case:
    """One kind of bad input or fault: how to build it, and what the user must see."""

    id: str
    argv: Callable  # (ctx) -> argv list (trainer flags are added to the context's good ones unless `replace`)
    names: tuple[str, ...] = ()  # strings the one-line message must contain (`{ctx attr}` placeholders allowed)
    expect: str = "error"  # "error" | "ok" (the documented acceptance)
    multiline: bool = False
    marks: list = field(default_factory=list)

    def resolved_names(self, ctx) -> list[str]:
        return [n.format(**ctx.__dict__) for n in self.names]
