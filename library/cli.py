"""Shared edge for the entry scripts: turn UserError into one clear line and a non-zero exit."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from library.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def setup_logging(level: int = logging.INFO) -> None:
    """Plain `LEVEL: message` logs on stderr, quiet third-party loggers."""
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    for noisy in ("diffusers", "transformers", "accelerate", "PIL", "urllib3", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_main(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run an entry point; user errors become `error: ...` on stderr with exit code 2."""
    setup_logging()
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
