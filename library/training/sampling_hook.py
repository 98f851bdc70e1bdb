"""Sample images during training with the vectors as they are, on sd-scripts' schedule flags.

Prompts come from --sample_prompts, or the diffusers example's --validation_prompt, or, when only a schedule
(--sample_every_n_steps / --sample_every_n_epochs / --sample_at_first) is given, from the training set: the first
caption that holds the token, as AUTOMATIC1111 previews with a dataset prompt. The log says which one.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


class Sampler:
    """Reads --sample_prompts once; writes OUTPUT_DIR/sample/NAME_<step>_<i>_<time>_<seed>.png when due."""

    def __init__(self, args: argparse.Namespace, models, tokens, accelerator, group=None):
        self.args = args
        self.models = models
        self.tokens = tokens
        self.accelerator = accelerator
        self.specs = []
        self.last_paths: list[Path] = []
        if not accelerator.is_main_process:
            return
        if args.sample_prompts:
            from library.sampling import parse_prompt_file

            from library.sampling.triggers import warn_prompts_without_triggers

            self.specs = parse_prompt_file(args.sample_prompts, strict=False)
            warn_prompts_without_triggers(self.specs, {tokens.token_string: tokens.names})
        elif getattr(args, "_sample_prompt_lines", None):
            from library.sampling.prompt_options import parse_prompt_line

            self.specs = [parse_prompt_line(line, source="--validation_prompt") for line in args._sample_prompt_lines]
        elif sampling_scheduled(args) and group is not None:
            self.specs = _training_set_prompt(group, tokens.token_string)

    def after_step(self, step: int) -> None:
        every = self.args.sample_every_n_steps
        if every and not self.args.sample_every_n_epochs and step % every == 0:  # epochs win, as in sd-scripts
            self.sample(step)

    def after_epoch(self, step: int, epoch: int) -> None:
        every = self.args.sample_every_n_epochs
        if every and epoch % every == 0:
            self.sample(step, epoch=epoch)

    def sample(self, step: int, epoch: int | None = None) -> list[Path]:
        """Images for every prompt; `epoch` names the files by epoch (sd-scripts does so at an epoch's end)."""
        if not self.specs:
            return []
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return []
        from library.sampling import sample_images

        rewrite = self.tokens.caption_rewriter()
        unet_mode, vae_device = self.models.unet.training, self.models.vae.device
        self.models.unet.eval()
        try:
            with torch.no_grad(), self.accelerator.autocast(), self.tokens.published():
                paths = sample_images(
                    self.models,
                    self.specs,
                    Path(self.args.output_dir or ".") / "sample",
                    self.args.output_name,
                    step,
                    epoch=epoch,
                    sampler=self.args.sample_sampler,
                    seed=self.args.seed,
                    prompt_rewrite=rewrite,
                    clip_skip=self.args.clip_skip,
                    max_embeddings_multiples=max(3, (self.args.max_token_length or 75) // 75),  # sd-scripts samples with up to 225 tokens
                    device=self.accelerator.device,
                )
        finally:
            self.models.unet.train(unet_mode)
            self.models.vae.to(vae_device)  # sampling moved it to the device; a cached run keeps it off
        logger.info("wrote %d sample image(s) at step %d", len(paths), step)
        self.last_paths = paths
        return paths

    def preview_image(self, step: int):
        """One image of the first prompt at this step (for --save_embedding_png), as a PIL image; None if none."""
        if not self.specs or not self.accelerator.is_main_process:
            return None
        from PIL import Image

        specs, self.specs = self.specs, self.specs[:1]
        try:
            paths = self.sample(step)
        finally:
            self.specs = specs
        if not paths:
            return None
        with Image.open(paths[0]) as image:
            return image.copy()


def sampling_scheduled(args: argparse.Namespace) -> bool:
    """Whether any flag asks for sample images during the run."""
    return bool(args.sample_every_n_steps or args.sample_every_n_epochs or args.sample_at_first
                or getattr(args, "save_embedding_png", False))


def sampling_wanted(args: argparse.Namespace) -> bool:
    """Whether the run will sample, so the VAE must stay available (also with cached latents)."""
    return bool(args.sample_prompts or getattr(args, "_sample_prompt_lines", None) or sampling_scheduled(args)
                or getattr(args, "save_embedding_png", False))


def _training_set_prompt(group, token_string: str) -> list:
    """One spec: the first training caption that holds the token (AUTOMATIC1111 previews with a dataset prompt)."""
    from library.sampling.prompt_options import PromptSpec
    from library.tokens import contains_token

    width, height = next((tuple(p.params.resolution) for p in group.parts if p.params.resolution), (None, None))
    for path, caption in group.iter_captions(with_paths=True):
        if contains_token(caption, token_string):
            logger.info("no --sample_prompts: sample images use the training caption %r (of %s)", caption, path)
            return [PromptSpec(prompt=caption, width=width, height=height, source=f"training caption of {path}")]
    logger.warning("no --sample_prompts and no training caption holds %r: sample images use the prompt %r", token_string, token_string)
    return [PromptSpec(prompt=token_string, width=width, height=height, source="the token string")]
