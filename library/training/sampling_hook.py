"""Sample images during training with the vectors as they are, on sd-scripts' schedule flags."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


class Sampler:
    """Reads --sample_prompts once; writes OUTPUT_DIR/sample/NAME_<step>_<i>_<time>_<seed>.png when due."""

    def __init__(self, args: argparse.Namespace, models, tokens, accelerator):
        self.args = args
        self.models = models
        self.tokens = tokens
        self.accelerator = accelerator
        self.specs = []
        if args.sample_prompts and accelerator.is_main_process:
            from library.sampling import parse_prompt_file

            self.specs = parse_prompt_file(args.sample_prompts, strict=False)

    def after_step(self, step: int) -> None:
        every = self.args.sample_every_n_steps
        if every and step % every == 0:
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
        return paths
