"""Specification of sd-scripts' console logging flags (--console_log_level/_file/_simple) in library/cli.py."""

from __future__ import annotations

import argparse
import logging

import pytest

import gen_img
import library.cli as cli
from library.errors import UserError
from tests.helpers.logging_state import root_logger_restored


@pytest.fixture(autouse=True)
def restore_root_logger():
    with root_logger_restored():
        yield


def flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_logging_arguments(parser)
    return parser.parse_args(list(argv))


def test_log_file_gets_messages_at_the_level_asked_and_replaces_the_console(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text("old run\n")
    cli.configure_console_logging(flags("--console_log_file", str(log), "--console_log_level", "WARNING"))
    demo = logging.getLogger("demo")
    demo.info("hidden below WARNING")
    demo.warning("kept")
    assert log.read_text() == "WARNING: kept\n"  # written afresh, like sd-scripts' mode "w"
    assert "kept" not in capsys.readouterr().err


def test_simple_output_drops_the_level_prefix(tmp_path):
    log = tmp_path / "run.log"
    cli.configure_console_logging(flags("--console_log_file", str(log), "--console_log_simple"))
    logging.getLogger("demo").info("plain message")
    assert log.read_text() == "plain message\n"


def test_debug_level_shows_debug_messages(tmp_path):
    log = tmp_path / "run.log"
    cli.configure_console_logging(flags("--console_log_file", str(log), "--console_log_level", "DEBUG"))
    logging.getLogger("demo").debug("details")
    assert "DEBUG: details" in log.read_text()


def test_no_flags_leave_logging_alone():
    root = logging.getLogger()
    before = root.handlers[:]
    cli.configure_console_logging(flags())
    assert root.handlers == before


def test_an_unwritable_log_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="--console_log_file .*cannot write it"):
        cli.configure_console_logging(flags("--console_log_file", str(tmp_path / "missing" / "run.log")))


def test_gen_img_accepts_the_logging_flags():
    args = gen_img.setup_parser().parse_args(["--console_log_level", "ERROR", "--console_log_simple"])
    assert args.console_log_level == "ERROR" and args.console_log_simple
