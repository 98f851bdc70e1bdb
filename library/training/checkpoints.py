"""Names, metadata and retention of the embedding files and state folders a run writes.

File names follow sd-scripts: `NAME-000005.ext` after epoch 5, `NAME-step00000500.ext` after step 500,
`NAME.ext` at the end; state folders add `-state`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import threading
from pathlib import Path

EXTENSIONS = {"safetensors": ".safetensors", "pt": ".pt", "ckpt": ".ckpt"}
STATE_SUFFIX = "-state"  # state folders: NAME-000005-state, NAME-step00000500-state


def epoch_stem(name: str, epoch: int) -> str:
    return f"{name}-{epoch:06d}"


def step_stem(name: str, step: int) -> str:
    return f"{name}-step{step:08d}"


def state_dir_name(stem: str) -> str:
    return f"{stem}{STATE_SUFFIX}"


def _numbered(output_dir: Path, name: str, kind: str, suffix: str) -> dict[int, Path]:
    pattern = re.compile(re.escape(name) + (r"-step(\d{8})" if kind == "step" else r"-(\d{6})") + re.escape(suffix) + "$")
    found = {}
    for path in output_dir.glob(f"{name}-*{suffix}"):
        match = pattern.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def outdated_epoch_saves(output_dir: Path, name: str, suffix: str, current_epoch: int, every_n_epochs: int, keep_last_n: int) -> list[Path]:
    """Epoch saves older than the last `keep_last_n` saves (sd-scripts' --save_last_n_epochs); with
    `suffix=STATE_SUFFIX`, the state folders (--save_last_n_epochs_state)."""
    oldest_kept = current_epoch - every_n_epochs * (keep_last_n - 1)
    return [p for e, p in _numbered(output_dir, name, "epoch", suffix).items() if e < oldest_kept]


def outdated_step_saves(output_dir: Path, name: str, suffix: str, current_step: int, keep_last_n_steps: int) -> list[Path]:
    """Step saves made more than `keep_last_n_steps` steps ago (sd-scripts' --save_last_n_steps); with
    `suffix=STATE_SUFFIX`, the state folders (--save_last_n_steps_state)."""
    return [p for s, p in _numbered(output_dir, name, "step", suffix).items() if s < current_step - keep_last_n_steps]


def build_metadata(
    *,
    architecture: str,
    v_parameterization: bool,
    resolution: tuple[int, int],
    title: str | None,
    token_string: str,
    num_vectors: int,
    step: int,
    epoch: int,
    base_model: str,
    base_model_hash: str | None,
    training_args: dict,
    clip_skip: int | None = None,
    author: str | None = None,
    description: str | None = None,
    license: str | None = None,
    tags: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """String metadata for safetensors: sd-scripts' `modelspec.*` keys plus our `ti_*` training record.

    `architecture` is the family adapter's `modelspec_architecture(v_parameterization)`. `extra` holds further
    `modelspec.*` keys from the --metadata_* flags; they win over the defaults above (e.g. --metadata_trigger_phrase
    over the token string).
    """
    now = datetime.datetime.now().replace(microsecond=0)
    meta = {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": f"{architecture}/textual-inversion",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.title": title or f"TextualInversion@{int(now.timestamp())}",
        "modelspec.resolution": f"{resolution[0]}x{resolution[1]}",
        "modelspec.prediction_type": "v" if v_parameterization else "epsilon",
        "modelspec.date": now.isoformat(),
        "modelspec.trigger_phrase": token_string,
        "ti_token_string": token_string,
        "ti_num_vectors_per_token": str(num_vectors),
        "ti_step": str(step),
        "ti_epoch": str(epoch),
        "ti_base_model": base_model,
        "ti_training_args": json.dumps(training_args, sort_keys=True, default=str),
    }
    optional = {
        "modelspec.encoder_layer": str(clip_skip) if clip_skip else None,
        "modelspec.author": author,
        "modelspec.description": description,
        "modelspec.license": license,
        "modelspec.tags": tags,
        "ti_base_model_hash": base_model_hash,
    }
    meta.update({k: v for k, v in optional.items() if v})
    meta.update({k: v for k, v in (extra or {}).items() if v is not None})
    return meta


class ModelHasher:
    """SHA-256 of the base model, computed in a background thread so it never delays the first step."""

    def __init__(self, path: str):
        self._result: str | None = None
        self._thread = threading.Thread(target=self._run, args=(Path(path),), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*.safetensors") if "unet" in p.parts or "transformer" in p.parts)
        if not files:
            return
        digest = hashlib.sha256()
        for file in files:
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 24), b""):
                    digest.update(block)
        self._result = digest.hexdigest()

    def result(self, wait: bool = True) -> str | None:
        """The hex digest (first 10 chars are A1111's "AutoV2" short hash); None if unavailable."""
        if wait:
            self._thread.join()
        return self._result
