"""Single-file checkpoints of the tiny models, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_single_file(tmp_path_factory):
    """A function (family, suffix, embed_config, prediction) -> tiny original-format checkpoint, cached.

    Built from the same seed as the `tiny_model_dir` directories, so both hold the same weights.
    prediction "auto" records the tiny scheduler's prediction type as sd-scripts' metadata does.
    """
    from library.models.original_format import save_single_file
    from library.models.tiny import build_tiny_components

    cache: dict[tuple, Path] = {}

    def get(family: str, suffix: str = ".safetensors", embed_config: bool = True, prediction: str | None = "auto") -> Path:
        key = (family, suffix, embed_config, prediction)
        if key not in cache:
            parts = build_tiny_components(family)
            if prediction == "auto":
                prediction = parts["scheduler"].config.prediction_type
            folder = tmp_path_factory.mktemp(f"single_{family}")
            cache[key] = save_single_file(parts, folder / f"tiny_{family}{suffix}", prediction_type=prediction,
                                          embed_config=embed_config)
        return cache[key]

    return get
