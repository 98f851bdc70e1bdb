"""Textual Inversion embedding files: read every layout in circulation, write ours, apply them to a model.

See docs/embeddings.md for the layouts, the trigger-word rule and the width checks.

Names are imported on first use, so `tools/embedding.py` starts without importing transformers (which only
applying embeddings to a model needs).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EmbeddingFile": "formats",
    "LAYOUTS": "formats",
    "SINGLE": "formats",
    "CLIP_L": "formats",
    "CLIP_G": "formats",
    "SD_SLOTS": "formats",
    "SDXL_SLOTS": "formats",
    "read_embedding": "reader",
    "save_embedding": "writer",
    "FORMATS": "writer",
    "convert_embedding": "convert",
    "load_embeddings_into": "apply",
    "make_prompt_rewriter": "apply",
    "slots_for": "apply",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"library.embeddings.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'library.embeddings' has no attribute {name!r}")
