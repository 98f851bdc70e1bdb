"""Adding a titled group of flags to a parser that other modules also extend."""

from __future__ import annotations

import argparse
from typing import Callable


def group_adder(parser: argparse.ArgumentParser, title: str) -> Callable[..., None]:
    """An add_argument for a new argument group that skips flags the parser already defines.

    Several modules add sd-scripts' and the diffusers example's flags to one parser; the first definition wins.
    """
    group = parser.add_argument_group(title)

    def add(flag: str, **kwargs) -> None:
        if flag not in parser._option_string_actions:
            group.add_argument(flag, **kwargs)

    return add
