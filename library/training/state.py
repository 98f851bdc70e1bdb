"""Resumable training state that holds only what TI needs: kilobytes, not the frozen model.

A state folder has the trained vectors (`vectors.safetensors`), the optimizer and LR-scheduler state
(`optimizer.pt`, `lr_scheduler.pt`, read back with weights_only=True), and `progress.json` (step, epoch,
batches done in the epoch, token names, seed, and `run`: the model, dataset and batch shape it trained on).
Noise and timesteps come from generators seeded by (seed, step), and the data order is a pure function of
(seed, epoch), so a resumed run continues exactly: --resume takes the state's seed, and refuses a run whose
model, dataset, batch size, accumulation or tokens differ from the state's, naming each difference.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from library.atomic import atomic_dir, old_dir_name
from library.embeddings.safe_pickle import load_torch_file
from library.errors import UserError

STATE_VERSION = 1


@dataclass
class Progress:
    global_step: int = 0
    epoch: int = 0  # epochs fully completed
    batches_in_epoch: int = 0  # dataloader batches consumed in the current epoch
    seed: int | None = None
    token_names: list[str] = field(default_factory=list)
    slots: list[str] = field(default_factory=list)
    scaler: dict | None = None
    version: int = STATE_VERSION
    run: dict | None = None  # what the run trained on (run_identity); None in states of older versions


def save_state(path: Path, vectors: dict[str, torch.Tensor], optimizer, lr_scheduler, progress: Progress) -> None:
    """Write a state folder atomically (an older folder of the same name is replaced only on success)."""
    with atomic_dir(path) as tmp:
        save_file({k: v.contiguous() for k, v in vectors.items()}, str(tmp / "vectors.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(lr_scheduler.state_dict(), tmp / "lr_scheduler.pt")
        (tmp / "progress.json").write_text(json.dumps(asdict(progress), indent=2))


def read_progress(path: str | Path) -> Progress:
    """Only progress.json of a state folder (cheap): enough to check a resume before any model is loaded."""
    path = Path(path)
    _check_folder(path)
    try:
        return Progress(**json.loads((path / "progress.json").read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"--resume {path}: the state folder is damaged (progress.json: {err})") from None


def _check_folder(path: Path) -> None:
    if not path.is_dir():
        if old_dir_name(path).is_dir():  # a kill while the folder was being replaced: the previous one is whole
            raise UserError(f"--resume {path}: no such state folder, but {old_dir_name(path)} is the complete previous state "
                            "(a save of this folder was interrupted); rename it to resume from it")
        raise UserError(f"--resume {path}: no such state folder (expected a folder like OUTPUT_DIR/NAME-step00000500-state)")
    needed = ["vectors.safetensors", "optimizer.pt", "lr_scheduler.pt", "progress.json"]
    missing = [n for n in needed if not (path / n).is_file()]
    if missing:
        raise UserError(f"--resume {path}: not a state folder of this trainer (missing {', '.join(missing)})")


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict, dict, Progress]:
    """Read a state folder written by save_state; errors name the folder and the missing piece."""
    path = Path(path)
    _check_folder(path)
    # pickles go through safe_pickle: a refused optimizer.pt gets the same one-line refusal as any other pickle
    optimizer_state = load_torch_file(path / "optimizer.pt", f"--resume {path / 'optimizer.pt'}")
    scheduler_state = load_torch_file(path / "lr_scheduler.pt", f"--resume {path / 'lr_scheduler.pt'}")
    try:
        progress = Progress(**json.loads((path / "progress.json").read_text()))
        vectors = load_file(str(path / "vectors.safetensors"))
    except Exception as err:  # safetensors' SafetensorError has no stable import path
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"--resume {path}: the state folder is damaged ({reason})") from None
    bad = [name for name, tensor in vectors.items() if not torch.isfinite(tensor).all()]
    if bad:
        raise UserError(f"--resume {path}: the saved vectors ({', '.join(bad)}) hold NaN/Inf; resume from an earlier state")
    if not isinstance(optimizer_state, dict) or not isinstance(scheduler_state, dict):
        raise UserError(f"--resume {path}: the state folder is damaged (optimizer.pt or lr_scheduler.pt holds no state dict)")
    return vectors, optimizer_state, scheduler_state, progress
