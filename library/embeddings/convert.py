"""Rewriting an embedding file of any readable layout in another layout, keeping its trigger word."""

from __future__ import annotations

import logging
from pathlib import Path

from library.embeddings.reader import pair_partner, read_embedding
from library.embeddings.writer import default_suffix, save_embedding
from library.errors import UserError

logger = logging.getLogger(__name__)

TARGETS = ("a1111-pt", "safetensors", "diffusers", "sdxl-pair", "a1111-png")


def default_output(source: Path, to: str) -> Path:
    """Beside the source with the same stem, so the trigger word stays the same."""
    return source.with_name(source.stem + default_suffix(to))


def convert_embedding(source: str | Path, to: str, *, out: str | Path | None = None, name: str | None = None, force: bool = False) -> list[Path]:
    """Read `source`, write it as `to` (one of TARGETS); refuses to overwrite a file unless `force`. Returns the files written."""
    if to not in TARGETS:
        raise UserError(f"--to {to!r}: expected one of {', '.join(TARGETS)}")
    emb = read_embedding(source)
    if to == "sdxl-pair" and not emb.is_sdxl:
        raise UserError(f"{source}: --to sdxl-pair needs an SDXL embedding (clip_l + clip_g); this one has one text encoder's vectors")
    out = Path(out) if out else default_output(emb.path, to)
    targets = [out, pair_partner(out)] if emb.is_sdxl and to in ("diffusers", "sdxl-pair") else [out]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise UserError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; pass --force to overwrite, or --out to write elsewhere")
    if emb.is_sdxl and to == "a1111-pt":
        logger.warning("an SDXL .pt holds only clip_l and clip_g (A1111 reads nothing else); the token name and step are not kept")
    token = name or emb.token or emb.trigger
    return save_embedding(out, emb.vectors, token=token, step=emb.step, metadata=emb.metadata, format=to)
