"""Atomic, durable writes: a file or folder appears complete under its final name, or not at all.

A temp file beside the target is written, flushed and fsynced, renamed over the target, and then the folder is
fsynced so the rename itself survives a power loss (the order SQLite and torchtune's checkpointers use). kill -9
at any point leaves either the old file or the new one under the final name, never a partial one; what can be
left is a hidden `.NAME.*.tmp` beside it. The temp file gets the user's umask mode (0644 typically), not
mkstemp's 0600, so a web UI running as another user can read what was saved.

A full disk while writing becomes one `UserError` naming the file and the space it needed.

Fault injection for tests (deterministic kill -9 and disk-full at named points of the save path):
`TI_FAULT_AT=POINT[:N]` makes the N-th (default first) writer reaching POINT call `os._exit(137)`, or raise
ENOSPC when the variable is `TI_FAULT_AT=enospc:POINT[:N]`. Points: see FAULT_POINTS.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from library.errors import UserError

FAULT_ENV = "TI_FAULT_AT"
# in the order a save passes them
FAULT_POINTS = (
    "tmp-created",  # empty temp file exists
    "tmp-half",  # the temp file is cut to half its length (a kill in the middle of writing)
    "tmp-written",  # temp file complete, not yet fsynced
    "tmp-synced",  # temp file fsynced, not yet renamed
    "old-moved",  # atomic_dir only: the previous folder moved aside, the new one not yet in place
    "renamed",  # the new file is in place, the folder not yet fsynced
)
_fault_counts: dict[str, int] = {}


def _fault(point: str, tmp: Path | None = None) -> None:
    """Test hook: kill the process (or fail as a full disk would) at `point` when TI_FAULT_AT names it."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    parts = spec.split(":")
    enospc = parts[0] == "enospc"
    if enospc:
        parts = parts[1:]
    if not parts or parts[0] != point:
        return
    _fault_counts[point] = _fault_counts.get(point, 0) + 1
    if _fault_counts[point] != (int(parts[1]) if len(parts) > 1 else 1):
        return
    if enospc:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if point == "tmp-half" and tmp is not None and tmp.is_file():
        os.truncate(tmp, tmp.stat().st_size // 2)
    os._exit(137)


def user_file_mode(directory: bool = False) -> int:
    """The mode a plain `open()` / `mkdir()` would give under the current umask (0o644 / 0o755 typically)."""
    umask = _current_umask()
    return (0o777 if directory else 0o666) & ~umask


def _current_umask() -> int:
    try:  # Linux >= 4.7: read it without changing it (os.umask would race with other threads)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes renames inside it durable)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # e.g. folders cannot be opened on Windows; nothing more can be done there
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):  # filesystems without fsync on folders
            raise
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for root, dirs, files in os.walk(folder):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(Path(root))


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # safetensors raises its own SafetensorError with the OS message inside
    return "No space left on device" in str(err) or "Disk quota exceeded" in str(err)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def disk_full_error(path: Path, needed: int | None) -> UserError:
    """One line for a save that ran out of space: which file, how much it needed, how much is free."""
    try:
        free = shutil.disk_usage(path.parent if path.parent.exists() else ".").free
        free_text = f", {format_bytes(free)} free"
    except OSError:
        free_text = ""
    need = f" (needed about {format_bytes(needed)}{free_text})" if needed else f" ({free_text[2:]})" if free_text else ""
    return UserError(f"{path}: not saved, the disk is full{need}; the files saved before it are intact. Free some space and "
                     "resume or rerun")


def format_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)  # an OSError here is the caller's to explain (it knows the flag)


@contextmanager
def atomic_path(path: str | Path, expected_size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`, on error removed.

    expected_size: roughly how many bytes the file takes, for the message if the disk fills up.
    """
    path = Path(path)
    _make_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            _fault("tmp-created", tmp_path)
            yield tmp_path
            _fault("tmp-half", tmp_path)
            _fault("tmp-written", tmp_path)
            os.chmod(tmp_path, user_file_mode())
            fsync_path(tmp_path)
        except Exception as err:
            if _is_disk_full(err):
                raise disk_full_error(path, expected_size or _size(tmp_path) or None) from None
            raise
        _fault("tmp-synced", tmp_path)
        os.replace(tmp_path, path)
        _fault("renamed")
        fsync_path(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | Path, expected_size: int | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` (an older one is removed).

    There is one moment, between moving an older folder aside and renaming the new one in, when neither is under
    the final name; a kill there leaves the older one complete as `.NAME.old` (load_state points to it).
    """
    path = Path(path)
    _make_dir(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        try:
            _fault("tmp-created", tmp)
            yield tmp
            _fault("tmp-written", tmp)
            os.chmod(tmp, user_file_mode(directory=True))
            _fsync_tree(tmp)
        except Exception as err:
            if _is_disk_full(err):
                raise disk_full_error(path, expected_size or _size(tmp) or None) from None
            raise
        _fault("tmp-synced", tmp)
        old = None
        if path.exists():
            old = old_dir_name(path)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            _fault("old-moved")
        os.replace(tmp, path)
        _fault("renamed")
        fsync_path(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def old_dir_name(path: Path) -> Path:
    """Where atomic_dir keeps the previous folder while the new one is renamed in."""
    return path.with_name(f".{path.name}.old")
