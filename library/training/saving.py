"""When and where embeddings and resumable states are written during a run."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from library.errors import UserError
from library.training import checkpoints as ck
from library.training import diffusers_outputs
from library.training.sd_scripts_flags import modelspec_extras, public_args, save_every_n_epochs_for
from library.training.state import Progress, save_state

logger = logging.getLogger(__name__)


class Saver:
    """Writes `NAME-000005.ext`, `NAME-step00000500.ext`, `NAME.ext` and their `-state` folders (main process only)."""

    def __init__(self, args: argparse.Namespace, models, family, tokens, hasher, accelerator, resolution: tuple[int, int], num_epochs: int,
                 stems: list[str] | None = None):
        self.args = args
        self.resolution = resolution
        self.num_epochs = num_epochs  # the last epoch is written as NAME.ext by save_final, not as an epoch file
        self.models = models
        self.family = family
        self.tokens = tokens
        self.hasher = hasher
        self.accelerator = accelerator
        self.output_dir = Path(args.output_dir or ".")
        self.name = args.output_name or "last"  # the state folders' name (and the one embedding's, with one concept)
        # one embedding file per concept (issue 17): (file stem, that concept's tokens); one concept keeps self.name
        concepts = getattr(tokens, "concepts", [tokens])
        if stems and len(concepts) == 1:
            self.name = stems[0]
        self.units = [(self.name, tokens)] if len(concepts) == 1 else list(zip(stems or [c.token_string for c in concepts], concepts))
        self.format = args.save_model_as or "safetensors"
        self.suffix = ck.EXTENSIONS[self.format]
        self.every_n_epochs = save_every_n_epochs_for(args, num_epochs)  # --save_n_epoch_ratio may set it
        self.modelspec_extras = modelspec_extras(args)  # read once: --metadata_thumbnail may name an image file
        # the diffusers example's file names (learned_embeds*.safetensors, checkpoint-N/), see diffusers_outputs
        self.diffusers_layout = bool(getattr(args, "_diffusers_outputs", False))
        self.final_paths: list[Path | None] = []
        self.preview = None  # set by the loop: step -> PIL image for --save_embedding_png, or None

    # --- what the loop calls
    def after_step(self, progress: Progress, optimizer, lr_scheduler) -> None:
        args, step = self.args, progress.global_step
        if self.diffusers_layout and diffusers_outputs.checkpoint_due(args, step):
            self._save_checkpoint(progress, optimizer, lr_scheduler)
        if not args.save_every_n_steps or step % args.save_every_n_steps:
            return
        for name, unit in self.units:
            self._save_embedding(ck.step_stem(name, step), progress.global_step, progress.epoch, unit, name)
        if args.save_state:
            self._save_state(ck.step_stem(self.name, step), progress, optimizer, lr_scheduler)
        if not self.accelerator.is_main_process:
            return
        if args.save_last_n_steps:
            for name, _ in self.units:
                self._remove(ck.outdated_step_saves(self.output_dir, name, self.suffix, step, args.save_last_n_steps))
        keep_states = args.save_last_n_steps_state or args.save_last_n_steps  # sd-scripts: the _state flag wins for states
        if args.save_state and keep_states:
            self._remove_states(ck.outdated_step_saves(self.output_dir, self.name, ck.STATE_SUFFIX, step, keep_states))

    def after_epoch(self, epoch: int, progress: Progress, optimizer, lr_scheduler) -> None:
        args = self.args
        every = self.every_n_epochs
        if not every or epoch % every or epoch >= self.num_epochs:
            return
        for name, unit in self.units:
            self._save_embedding(ck.epoch_stem(name, epoch), progress.global_step, epoch, unit, name)
        if args.save_state:
            self._save_state(ck.epoch_stem(self.name, epoch), progress, optimizer, lr_scheduler)
        if not self.accelerator.is_main_process:
            return
        if args.save_last_n_epochs:
            for name, _ in self.units:
                self._remove(ck.outdated_epoch_saves(self.output_dir, name, self.suffix, epoch, every, args.save_last_n_epochs))
        keep_states = args.save_last_n_epochs_state or args.save_last_n_epochs  # sd-scripts: the _state flag wins for states
        if args.save_state and keep_states:
            self._remove_states(ck.outdated_epoch_saves(self.output_dir, self.name, ck.STATE_SUFFIX, epoch, every, keep_states))

    def save_final(self, step: int, epoch: int) -> Path | None:
        """Write every concept's final embedding; returns the first one's path (all of them: `self.final_paths`)."""
        self.final_paths = [self._save_embedding(name, step, epoch, unit, name) for name, unit in self.units]
        path = self.final_paths[0]
        if path is not None and self.diffusers_layout and getattr(self.args, "save_as_full_pipeline", None):
            diffusers_outputs.save_full_pipeline(self.output_dir, self.models, self.family, self.tokens.token_string,
                                                 self.tokens.published_vectors())
        return path

    def save_final_state(self, progress: Progress, optimizer, lr_scheduler) -> None:
        self._save_state(self.name, progress, optimizer, lr_scheduler)

    # --- internals
    def _save_embedding(self, stem: str, step: int, epoch: int, unit=None, name: str | None = None) -> Path | None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return None
        from library.embeddings import save_embedding

        unit = unit if unit is not None else self.tokens
        name = name or self.name
        vectors = unit.published_vectors()
        if self.diffusers_layout:
            refuse_non_finite(vectors, self.output_dir / "learned_embeds")
            path = diffusers_outputs.save_learned_embeds(self.args, self.output_dir, vectors, unit.token_string, step, final=stem == name)
            self._save_png(path, vectors, step, epoch, unit, name)
            return path
        path = self.output_dir / f"{stem}{self.suffix}"
        refuse_non_finite(vectors, path)
        save_embedding(
            path,
            vectors,
            token=unit.token_string,
            step=step,
            metadata=self._metadata(step, epoch, unit, name),
            format=self.format,
            dtype=self.args.save_precision,
        )
        logger.info("saved embedding: %s", path)
        self._save_png(path, vectors, step, epoch, unit, name)
        return path

    def _save_png(self, path: Path, vectors: dict, step: int, epoch: int, unit=None, name: str | None = None) -> None:
        """--save_embedding_png: the same vectors in a preview PNG that AUTOMATIC1111 loads as an embedding."""
        if not getattr(self.args, "save_embedding_png", False):
            return
        from library.embeddings import save_embedding

        png = path.with_name(path.name.rsplit(".", 1)[0] + ".png")
        picture = self.preview(step) if self.preview is not None else None
        unit = unit if unit is not None else self.tokens
        save_embedding(png, vectors, token=unit.token_string, step=step,
                       metadata=self._metadata(step, epoch, unit, name), format="a1111-png", dtype=self.args.save_precision, picture=picture)
        logger.info("saved embedding image: %s", png)

    def _save_checkpoint(self, progress: Progress, optimizer, lr_scheduler) -> None:
        """--checkpointing_steps: OUTPUT_DIR/checkpoint-N, keeping at most --checkpoints_total_limit."""
        limit = getattr(self.args, "checkpoints_total_limit", None)
        if limit and self.accelerator.is_main_process:
            diffusers_outputs.prune_checkpoints(self.output_dir, limit - 1)
        self._save_state(None, progress, optimizer, lr_scheduler, path=diffusers_outputs.checkpoint_dir(self.output_dir, progress.global_step))

    def _save_state(self, stem: str | None, progress: Progress, optimizer, lr_scheduler, path: Path | None = None) -> None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        if self.accelerator.scaler is not None:
            progress.scaler = self.accelerator.scaler.state_dict()
        path = path or self.output_dir / ck.state_dir_name(stem)
        # the live vectors, not the published ones: a resumed run continues training from exactly these
        save_state(path, self.tokens.vectors_by_slot(), optimizer, lr_scheduler, progress)
        logger.info("saved state: %s", path)

    def _metadata(self, step: int, epoch: int, unit=None, name: str | None = None) -> dict[str, str]:
        args = self.args
        unit = unit if unit is not None else self.tokens
        several = len(self.units) > 1
        return ck.build_metadata(
            architecture=self.family.modelspec_architecture(self.models.v_parameterization),
            v_parameterization=self.models.v_parameterization,
            resolution=self.resolution,
            title=(f"{args.metadata_title} ({name})" if args.metadata_title else name) if several else (args.metadata_title or args.output_name),
            token_string=unit.token_string,
            num_vectors=unit.num_vectors,
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
            extra={**self.modelspec_extras, **({"ss_training_comment": args.training_comment} if args.training_comment else {})},
        )

    def _remove(self, paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
            logger.info("removed old embedding: %s", path)

    def _remove_states(self, state_dirs: list[Path]) -> None:
        import shutil

        for path in state_dirs:
            shutil.rmtree(path, ignore_errors=True)
            logger.info("removed old state: %s", path)


def refuse_non_finite(vectors_by_slot: dict, path: Path) -> None:
    """Never write NaN/Inf vectors: over an existing file they would destroy good work, and alone they are useless."""
    import torch

    for slot, tensor in vectors_by_slot.items():
        if not torch.isfinite(tensor).all():
            kept = f"{path} keeps its previous content" if path.exists() else f"{path} was not written"
            raise UserError(f"not saved: the trained {slot} vectors hold NaN/Inf; {kept}. The earlier saves hold the last "
                            "finite vectors; lower --learning_rate or pass --skip_nan")
