"""Shared edge for the entry scripts: console logging (sd-scripts' --console_log_* flags), and UserError turned
into one clear line and a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from library.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


CONSOLE_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(levelname)s: %(message)s"
SIMPLE_LOG_FORMAT = "%(message)s"  # --console_log_simple
_console_handler: logging.Handler | None = None  # the handler this module installed on the root logger


def setup_logging(level: int = logging.INFO) -> None:
    """Plain `LEVEL: message` logs on stderr, quiet third-party loggers."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    for noisy in ("diffusers", "transformers", "accelerate", "PIL", "urllib3", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """sd-scripts' console logging flags (library/utils.py::add_logging_arguments); trainers and gen_img.py."""
    group = parser.add_argument_group("console logging")

    def add(flag: str, **kwargs) -> None:
        if flag not in parser._option_string_actions:  # a parser may compose this group twice
            group.add_argument(flag, **kwargs)

    add("--console_log_level", type=str, default=None, choices=CONSOLE_LOG_LEVELS,
        help="lowest level of log messages shown (default INFO)")
    add("--console_log_file", type=str, default=None,
        help="write log messages to this file instead of the console (errors still print to stderr)")
    add("--console_log_simple", action="store_true", help="bare log messages, without the 'LEVEL:' prefix")


def configure_console_logging(args: argparse.Namespace) -> None:
    """Apply sd-scripts' --console_log_level / --console_log_file / --console_log_simple once flags are parsed.

    The level applies to the root logger (default INFO); a log file replaces the console (written afresh, like
    sd-scripts' mode "w"); errors that stop the run are still printed to stderr by `run_main`."""
    global _console_handler
    level = getattr(args, "console_log_level", None)
    log_file = getattr(args, "console_log_file", None)
    simple = getattr(args, "console_log_simple", False)
    if level is None and log_file is None and not simple:
        return
    root = logging.getLogger()
    if log_file:
        try:
            handler: logging.Handler = logging.FileHandler(log_file, mode="w", encoding="utf-8")
        except OSError as err:
            raise UserError(f"--console_log_file {log_file}: cannot write it ({err.strerror or err})") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(SIMPLE_LOG_FORMAT if simple else LOG_FORMAT))
    # replace the console handler setup_logging (basicConfig) or an earlier call installed; leave others alone
    for old in root.handlers[:]:
        if old is _console_handler or (type(old) is logging.StreamHandler and getattr(old, "stream", None) is sys.stderr):
            root.removeHandler(old)
            if old is _console_handler and isinstance(old, logging.FileHandler):
                old.close()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level or "INFO"))
    _console_handler = handler


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
