"""Checks of where a run will write, done before any model is loaded, so no run dies at its first or last save.

- the output folder (and the logging folder) can be created and written: a probe file is written and removed;
- the output name is a plain file name;
- no other run is writing the same output name into the same folder (a lock file, released by the OS even on kill -9);
- an existing `NAME.ext` is said in the log: like sd-scripts, the run overwrites it at the end;
- the disk has room for every save the run will make (checked once the vectors' size is known).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
from pathlib import Path

from library.atomic import format_bytes
from library.errors import UserError
from library.writable import check_writable_dir

logger = logging.getLogger(__name__)

_EXTENSIONS = {"safetensors": ".safetensors", "pt": ".pt", "ckpt": ".ckpt"}
# what a state folder and an embedding hold beyond the vectors: progress.json, headers, the metadata record
_STATE_OVERHEAD = 64 * 1024
_EMBEDDING_OVERHEAD = 64 * 1024
_LOCKS: dict[Path, int] = {}  # lock files held by this process -> their descriptors


def check_output_name(name: str | None) -> None:
    """--output_name becomes a file name: no folders, not empty, not '.' or '..'."""
    if name is None:
        return
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UserError(f"--output_name {name!r}: must be a plain file name without folders (put folders in --output_dir)")


def prepare_output(args: argparse.Namespace, *, is_main: bool = True) -> None:
    """Create and probe --output_dir (and --logging_dir), take the output-name lock, mention a file to be overwritten."""
    check_output_name(args.output_name)
    if not is_main:
        return
    out = check_writable_dir(args.output_dir or ".", "--output_dir")
    if getattr(args, "logging_dir", None):
        check_writable_dir(args.logging_dir, "--logging_dir")
    name = args.output_name or "last"
    lock_output_name(out, name)
    final = out / f"{name}{_EXTENSIONS.get(args.save_model_as or 'safetensors', '.safetensors')}"
    if final.exists():
        logger.warning("%s already exists: this run overwrites it when it ends (as sd-scripts does); "
                       "use another --output_name to keep it", final)


def lock_output_name(folder: Path, name: str) -> None:
    """Refuse a second run writing `name` into `folder` while the first one runs (POSIX advisory lock).

    The lock lives on an open file descriptor, so a killed run releases it at once: no stale locks.
    """
    path = (folder / f".{name}.lock").resolve()
    if path in _LOCKS:
        return  # this process holds it already (a second training in the same process, e.g. tests)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; atomic writes still keep every file whole
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(f"--output_name {name}: another run (pid {holder}) is writing {name} into {folder}; "
                        "wait for it, or use another --output_name or --output_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _LOCKS[path] = fd


def release_output_locks() -> None:
    """Give up the locks this process holds (the end of a run; the OS does it on exit anyway)."""
    for path, fd in list(_LOCKS.items()):
        os.close(fd)
        del _LOCKS[path]


def expected_save_bytes(args: argparse.Namespace, vector_bytes: int, max_steps: int, num_epochs: int) -> int:
    """Upper bound of the bytes a run writes: every embedding and state folder it saves, before retention deletes any."""
    saves = 1  # NAME.ext
    if args.save_every_n_steps:
        kept = math.ceil(args.save_last_n_steps / args.save_every_n_steps) + 1 if args.save_last_n_steps else None
        count = max_steps // args.save_every_n_steps
        saves += min(count, kept) if kept else count
    if args.save_every_n_epochs:
        count = num_epochs // args.save_every_n_epochs
        saves += min(count, args.save_last_n_epochs + 1) if args.save_last_n_epochs else count
    embedding = vector_bytes + _EMBEDDING_OVERHEAD
    # fp32 vectors, and optimizers hold up to two moments of the same size
    state = 3 * vector_bytes + _STATE_OVERHEAD if (args.save_state or args.save_state_on_train_end) else 0
    state_saves = saves if args.save_state else (1 if args.save_state_on_train_end else 0)
    # an atomic replace needs the new file beside the old one for a moment: one more save's worth
    return (saves + 1) * embedding + (state_saves + 1 if state_saves else 0) * state


def check_free_space(args: argparse.Namespace, vector_bytes: int, max_steps: int, num_epochs: int) -> None:
    """Refuse to start when the output disk cannot hold the run's saves: better now than after hours of training."""
    needed = expected_save_bytes(args, vector_bytes, max_steps, num_epochs)
    out = Path(args.output_dir or ".")
    try:
        free = shutil.disk_usage(out).free
    except OSError:
        return
    if free < needed:
        raise UserError(f"--output_dir {out}: {format_bytes(free)} free, but this run's saves need about {format_bytes(needed)}; "
                        "free some space, save less often (--save_every_n_steps) or keep fewer (--save_last_n_steps)")
