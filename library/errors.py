"""Errors that the user can act on.

A `UserError` carries a message that says what was wrong, where (file, key or flag) and what to do.
Entry points print it as one line and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a flag, a file, a config key. The message is shown as is."""


class MissingDependencyError(UserError):
    """An optional package is needed for what the user asked for."""

    def __init__(self, package: str, needed_for: str, install: str | None = None):
        install = install or f"pip install {package}"
        super().__init__(f"{needed_for} needs the package '{package}', which is not installed. Install it with: {install}")
        self.package = package
