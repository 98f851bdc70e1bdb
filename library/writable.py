"""Is an output folder usable? Asked before any model is loaded, so a run never fails at its first save.

A path under a regular file, a read-only mount or a folder without write permission would otherwise be found
only when the first image or embedding is written, minutes or hours later.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from library.errors import UserError


def check_writable_dir(path: str | Path, flag: str) -> Path:
    """Create `path` if needed and prove it writable by writing and removing a probe file; UserError naming `flag` if not.

    Returns the folder as a Path. Folders created here are kept (the run writes into them next).
    """
    folder = Path(path).expanduser()
    if str(path).strip() == "":
        raise UserError(f"{flag} is empty: give a folder to write into")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {path}: exists and is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise UserError(f"{flag} {path}: cannot create the folder, {blocker} is a file") from None
    except NotADirectoryError:
        blocker = next((p for p in folder.parents if p.exists() and not p.is_dir()), folder.parent)
        raise UserError(f"{flag} {path}: cannot create the folder, {blocker} is a file") from None
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot create the folder ({err.strerror or err})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", dir=folder)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise UserError(f"{flag} {path}: the folder is not writable ({err.strerror or err})") from None
    return folder
