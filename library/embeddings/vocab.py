"""A model's token-embedding tables, read straight from its files, to compare embedding vectors with.

Only the tables are read (one tensor per text encoder, via safetensors' lazy access), so `inspect --model`
stays fast on full-size checkpoints and builds no model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from library.embeddings.formats import CLIP_G, CLIP_L, SINGLE
from library.errors import UserError

# transformers 4 wrote the text_model. prefix, transformers 5 does not
_DIFFUSERS_KEYS = ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight")
# single-file checkpoints (the original Stability layouts), per family
_SINGLE_FILE_KEYS = [
    {CLIP_L: "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight", CLIP_G: "conditioner.embedders.1.model.token_embedding.weight"},
    {SINGLE: "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"},
    {SINGLE: "cond_stage_model.transformer.embeddings.token_embedding.weight"},
    {SINGLE: "cond_stage_model.model.token_embedding.weight"},
]


def token_embedding_tables(model_path: str | Path) -> dict[str, torch.Tensor]:
    """Slot -> (vocab, dim) token-embedding table of a diffusers folder or a single-file .safetensors model."""
    from safetensors import safe_open

    path = Path(model_path)
    if path.is_dir():
        folders = {SINGLE: path / "text_encoder"} if not (path / "text_encoder_2").is_dir() else {CLIP_L: path / "text_encoder", CLIP_G: path / "text_encoder_2"}
        tables = {}
        for slot, folder in folders.items():
            for file in sorted(folder.glob("*.safetensors")):
                with safe_open(str(file), framework="pt") as f:
                    key = next((k for k in f.keys() if k in _DIFFUSERS_KEYS), None)
                    if key:
                        tables[slot] = f.get_tensor(key)
                        break
            else:
                raise UserError(f"--model {path}: no token embedding ({_DIFFUSERS_KEYS[0]}) in {folder}/*.safetensors")
        return tables
    if path.suffix.lower() == ".safetensors" and path.is_file():
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            for layout in _SINGLE_FILE_KEYS:
                if all(key in keys for key in layout.values()):
                    return {slot: f.get_tensor(key) for slot, key in layout.items()}
        raise UserError(f"--model {path}: no text-encoder token embedding found in this checkpoint")
    raise UserError(f"--model {path}: pass a diffusers model folder or a single-file .safetensors checkpoint")


def norm_summary(table: torch.Tensor) -> dict[str, float]:
    """Mean, median and 99th percentile of the L2 norms of a table's rows."""
    norms = table.float().norm(dim=-1)
    return {"mean": norms.mean().item(), "median": norms.median().item(), "p99": torch.quantile(norms, 0.99).item()}
