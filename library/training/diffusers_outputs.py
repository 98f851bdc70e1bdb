"""Outputs where a user of the diffusers Textual Inversion example looks for them.

With the example's flags (see `diffusers_example_flags`) and no --output_name, a run writes into --output_dir:

- `learned_embeds.safetensors` (`.bin` with --no_safe_serialization): `{placeholder_token: N x dim}`, which
  `pipe.load_textual_inversion(output_dir)` loads; SDXL adds `learned_embeds_2.safetensors` (the second encoder),
  as the SDXL example does;
- `learned_embeds-steps-N.*` every --save_steps;
- `checkpoint-N/` resumable states every --checkpointing_steps (at most --checkpoints_total_limit kept), which
  --resume_from_checkpoint (or `latest`) continues;
- with --save_as_full_pipeline, a full diffusers pipeline folder (model_index.json, tokenizer(s) and text
  encoder(s) holding the new token) that `StableDiffusionPipeline.from_pretrained(output_dir)` loads.
"""

from __future__ import annotations

import argparse
import copy
import logging
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


def embedding_file_name(args: argparse.Namespace, step: int | None = None) -> str:
    """`learned_embeds[-steps-N].safetensors` (or `.bin` with --no_safe_serialization)."""
    suffix = ".bin" if getattr(args, "no_safe_serialization", None) else ".safetensors"
    return f"learned_embeds{'' if step is None else f'-steps-{step}'}{suffix}"


def save_learned_embeds(args: argparse.Namespace, output_dir: Path, vectors_by_slot: dict, token: str, step: int, final: bool) -> Path:
    """Write the example's embedding file(s); returns the first."""
    from library.embeddings import save_embedding

    path = output_dir / embedding_file_name(args, None if final else step)
    save_embedding(path, vectors_by_slot, token=token, step=step, format="diffusers")
    logger.info("saved embedding: %s", path)
    return path


def checkpoint_due(args: argparse.Namespace, step: int) -> bool:
    every = getattr(args, "checkpointing_steps", None)
    return bool(every) and step % every == 0


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / f"checkpoint-{step}"


def prune_checkpoints(output_dir: Path, limit: int | None) -> list[Path]:
    """Remove the oldest `checkpoint-N` folders so that at most `limit` remain (the example prunes before saving)."""
    if not limit:
        return []
    found = sorted(
        (int(p.name.split("-", 1)[1]), p) for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()
    )
    removed = [p for _, p in found[: max(0, len(found) - limit)]]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
        logger.info("removed old checkpoint: %s", path)
    return removed


def save_full_pipeline(output_dir: Path, models, family, token: str, vectors: dict) -> Path:
    """A diffusers pipeline folder: the frozen model with the trained token added by diffusers' own loader."""
    import torch
    from diffusers import DDIMScheduler

    from library.models.loading import load_tokenizers
    from library.token_embedding import ExtendedTokenEmbedding

    encoders = []
    for encoder in models.text_encoders:
        clone = copy.deepcopy(encoder).to("cpu", torch.float32)
        embedding = clone.get_input_embeddings()
        if isinstance(embedding, ExtendedTokenEmbedding):
            clone.set_input_embeddings(embedding.base)  # the model's own table; diffusers appends the token
        encoders.append(clone)
    scheduler = DDIMScheduler.from_config(models.noise_scheduler.config)
    parts = dict(vae=copy.deepcopy(models.vae).to("cpu", torch.float32), unet=copy.deepcopy(models.unet).to("cpu", torch.float32), scheduler=scheduler)
    vectors = {slot: v.detach().to("cpu", torch.float32) for slot, v in vectors.items()}
    pipe = family.full_pipeline(parts, encoders, load_tokenizers(models.family), vectors, token)
    pipe.save_pretrained(str(output_dir), safe_serialization=True)
    logger.info("saved a full diffusers pipeline with %r: %s", token, output_dir)
    return output_dir
