"""`--learning_rate` as a value: a plain number or A1111's piecewise schedule.

A leaf module: both the optimizer (which starts from the schedule's first rate) and the LR scheduler (which follows
the schedule) read it, so neither has to import the other.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from library.errors import UserError


class LearningRateSyntaxError(UserError, argparse.ArgumentTypeError):
    """A `--learning_rate` that is neither a number nor a piecewise schedule; argparse shows it as a usage error."""


@dataclass(frozen=True)
class LearningRateSchedule:
    """A1111's piecewise-constant learning rate: `"0.005:100, 1e-3:1000, 1e-5"`.

    `pieces` are (rate, end_step): the rate holds for optimizer steps [previous end, end_step); the last piece may be
    open (end_step None). After a bounded last piece its rate continues (A1111 instead stops training there).
    """

    pieces: tuple[tuple[float, int | None], ...]

    @property
    def initial_rate(self) -> float:
        return self.pieces[0][0]

    @property
    def end_step(self) -> int | None:
        """The step where the last bounded piece ends (None when the last piece is open)."""
        return self.pieces[-1][1]

    def rate_at(self, step: int) -> float:
        """Learning rate for optimizer step `step` (0-based)."""
        for rate, end in self.pieces:
            if end is None or step < end:
                return rate
        return self.pieces[-1][0]

    def scaled(self, factor: float) -> "LearningRateSchedule":
        return LearningRateSchedule(tuple((rate * factor, end) for rate, end in self.pieces))

    def __str__(self) -> str:
        return ", ".join(f"{rate:g}" if end is None else f"{rate:g}:{end}" for rate, end in self.pieces)


def parse_learning_rate(text: str | float | int | LearningRateSchedule) -> float | LearningRateSchedule:
    """`--learning_rate`: a number (`5e-4`) or A1111's schedule (`"0.005:100, 1e-3:1000, 1e-5"`).

    In a schedule each `rate:step` holds until optimizer step `step`; a step of -1 or no step means to the end
    and must be the last piece. Usable as an argparse `type`.
    """
    if isinstance(text, LearningRateSchedule):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return _rate(str(text), str(text), text)
    text = str(text).strip()
    if ":" not in text and "," not in text:
        return _rate(text, text, text)
    raw_pieces = [p.strip() for p in text.split(",")]
    pieces: list[tuple[float, int | None]] = []
    for index, piece in enumerate(raw_pieces):
        if not piece:
            if index == len(raw_pieces) - 1:
                continue  # a trailing comma
            raise LearningRateSyntaxError(f"--learning_rate '{text}': empty piece between commas")
        if pieces and pieces[-1][1] is None:
            raise LearningRateSyntaxError(
                f"--learning_rate '{text}': piece '{raw_pieces[index - 1]}' runs to the end, so '{piece}' is never reached; "
                "only the last piece may omit ':step'"
            )
        rate_text, sep, step_text = piece.partition(":")
        rate = _rate(rate_text.strip(), piece, text)
        end: int | None = None
        if sep:
            try:
                end = int(step_text.strip())
            except ValueError:
                raise LearningRateSyntaxError(
                    f"--learning_rate '{text}': bad piece '{piece}': the step after ':' must be a whole number"
                ) from None
            if end == -1:
                end = None
            elif end <= 0:
                raise LearningRateSyntaxError(
                    f"--learning_rate '{text}': bad piece '{piece}': the step must be positive (or -1 for the end)"
                )
            elif pieces and pieces[-1][1] is not None and end <= pieces[-1][1]:
                raise LearningRateSyntaxError(
                    f"--learning_rate '{text}': bad piece '{piece}': steps must increase ({end} is not after {pieces[-1][1]})"
                )
        pieces.append((rate, end))
    if not pieces:
        raise LearningRateSyntaxError("--learning_rate is empty")
    return LearningRateSchedule(tuple(pieces))


def _rate(rate_text: str, piece: str, whole) -> float:
    try:
        rate = float(rate_text)
    except ValueError:
        raise LearningRateSyntaxError(
            f"--learning_rate '{whole}': bad piece '{piece}': '{rate_text}' is not a number "
            "(expected a number like 5e-4, or a schedule like \"0.005:100, 1e-3:1000, 1e-5\")"
        ) from None
    if not math.isfinite(rate) or rate < 0:
        raise LearningRateSyntaxError(f"--learning_rate '{whole}': bad piece '{piece}': the rate must be a finite number >= 0")
    return rate
