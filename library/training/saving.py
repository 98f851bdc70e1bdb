"""When and where embeddings and resumable states are written during a run."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from library.training import checkpoints as ck
from library.training.state import Progress, save_state
from library.training.tracking import public_args

logger = logging.getLogger(__name__)


class Saver:
    """Writes `NAME-000005.ext`, `NAME-step00000500.ext`, `NAME.ext` and their `-state` folders (main process only)."""

    def __init__(self, args: argparse.Namespace, models, tokens, hasher, accelerator, resolution: tuple[int, int], num_epochs: int):
        self.args = args
        self.resolution = resolution
        self.num_epochs = num_epochs  # the last epoch is written as NAME.ext by save_final, not as an epoch file
        self.models = models
        self.tokens = tokens
        self.hasher = hasher
        self.accelerator = accelerator
        self.output_dir = Path(args.output_dir or ".")
        self.name = args.output_name or "last"
        self.format = args.save_model_as or "safetensors"
        self.suffix = ck.EXTENSIONS[self.format]

    # --- what the loop calls
    def after_step(self, progress: Progress, optimizer, lr_scheduler) -> None:
        args, step = self.args, progress.global_step
        if not args.save_every_n_steps or step % args.save_every_n_steps:
            return
        stem = ck.step_stem(self.name, step)
        self._save_embedding(stem, progress.global_step, progress.epoch)
        if args.save_state:
            self._save_state(stem, progress, optimizer, lr_scheduler)
        if args.save_last_n_steps and self.accelerator.is_main_process:
            self._remove(ck.outdated_step_saves(self.output_dir, self.name, self.suffix, step, args.save_last_n_steps))
            if args.save_state:
                self._remove_states(ck.outdated_step_saves(self.output_dir, self.name, self.suffix, step, args.save_last_n_steps))

    def after_epoch(self, epoch: int, progress: Progress, optimizer, lr_scheduler) -> None:
        args = self.args
        if not args.save_every_n_epochs or epoch % args.save_every_n_epochs or epoch >= self.num_epochs:
            return
        stem = ck.epoch_stem(self.name, epoch)
        self._save_embedding(stem, progress.global_step, epoch)
        if args.save_state:
            self._save_state(stem, progress, optimizer, lr_scheduler)
        if args.save_last_n_epochs and self.accelerator.is_main_process:
            old = ck.outdated_epoch_saves(self.output_dir, self.name, self.suffix, epoch, args.save_every_n_epochs, args.save_last_n_epochs)
            self._remove(old)
            if args.save_state:
                self._remove_states(old)

    def save_final(self, step: int, epoch: int) -> Path | None:
        return self._save_embedding(self.name, step, epoch)

    def save_final_state(self, progress: Progress, optimizer, lr_scheduler) -> None:
        self._save_state(self.name, progress, optimizer, lr_scheduler)

    # --- internals
    def _save_embedding(self, stem: str, step: int, epoch: int) -> Path | None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return None
        from library.embeddings import save_embedding

        path = self.output_dir / f"{stem}{self.suffix}"
        save_embedding(
            path,
            self.tokens.vectors_by_slot(),
            token=self.tokens.token_string,
            step=step,
            metadata=self._metadata(step, epoch),
            format=self.format,
            dtype=self.args.save_precision,
        )
        logger.info("saved embedding: %s", path)
        return path

    def _save_state(self, stem: str, progress: Progress, optimizer, lr_scheduler) -> None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        if self.accelerator.scaler is not None:
            progress.scaler = self.accelerator.scaler.state_dict()
        path = self.output_dir / ck.state_dir_name(stem)
        save_state(path, self.tokens.vectors_by_slot(), optimizer, lr_scheduler, progress)
        logger.info("saved state: %s", path)

    def _metadata(self, step: int, epoch: int) -> dict[str, str]:
        args = self.args
        return ck.build_metadata(
            family=self.models.family,
            v_parameterization=self.models.v_parameterization,
            resolution=self.resolution,
            title=args.metadata_title or args.output_name,
            token_string=self.tokens.token_string,
            num_vectors=self.tokens.num_vectors,
            step=step,
            epoch=epoch,
            base_model=Path(args.pretrained_model_name_or_path).name,
            base_model_hash=self.hasher.result(wait=True) if self.hasher else None,
            training_args=public_args(args),
            clip_skip=args.clip_skip,
            author=args.metadata_author,
            description=args.metadata_description,
            license=args.metadata_license,
            tags=args.metadata_tags,
        )

    def _remove(self, paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
            logger.info("removed old embedding: %s", path)

    def _remove_states(self, embedding_paths: list[Path]) -> None:
        import shutil

        for path in embedding_paths:
            state = path.with_name(ck.state_dir_name(path.name.removesuffix(self.suffix)))
            shutil.rmtree(state, ignore_errors=True)

