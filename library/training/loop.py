"""The Textual Inversion training loop, shared by SD 1.x/2.x and SDXL.

Reads top to bottom: models and tokens, data, optimizer, summary, then the loop with saving, sampling,
validation and logging. Only the N new token vectors train; everything else is frozen and never written.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from library.cli import configure_console_logging
from library.errors import UserError
from library.training import data_setup, model_setup
from library.training.allocator import keep_freed_memory
from library.training.checkpoints import ModelHasher
from library.training.optimization import base_learning_rate, build_lr_scheduler_for, build_optimizer_for, optimizer_train_mode
from library.training.sampling_hook import Sampler, sampling_wanted
from library.training.saving import Saver
from library.training.seeding import sample_generators
from library.training.validation import Validator
from library.training.family import family_for
from library.training.loss import snr_table
from library.training.loss_chart import draw_loss_chart
from library.training.noise import apply_zero_terminal_snr
from library.training.flag_rules import check_training_flags
from library.training import memory_estimate, preflight
from library.training.precision import step_was_skipped
from library.training.run_setup import make_accelerator, total_steps, weight_dtype_for
from library.training.token_window import token_window, warn_if_captions_overflow
from library.training.resume_check import adopt_saved_seed, check_resume, run_identity
from library.training.state import Progress, load_state, read_progress
from library.training.step import StepSettings, training_step
from library.training.concept_step import lockstep_step
from library.training.summary import print_summary
from library.training.tracking import start_tracking
from library.training.trainable_tokens import setup_concept_tokens, setup_trainable_tokens
from library.training.concepts import concept_learning_rate, concept_summary_lines, resolve_concepts
from library.training.zero_gradient import batch_reaches_vectors, fill_missing_gradients
from library.dataset.lockstep import ConceptLockstep

logger = logging.getLogger(__name__)


class NonFiniteLoss(UserError):
    """Training produced NaN/Inf; the last good vectors were saved."""


@dataclass
class TrainResult:
    """What a run produced; `models` and `tokens` are the in-memory objects (for callers and tests)."""

    output_file: Path | None
    global_step: int
    losses: list[float] = field(default_factory=list)
    models: object = None
    tokens: object = None
    skipped_backwards: int = 0  # batches that could not reach the vectors (exact zero gradient, no backward)
    validation_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) of each validation
    overflow_skipped_steps: int = 0  # fp16: optimizer steps the loss scaler skipped (gradients overflowed)
    output_files: list = field(default_factory=list)  # every concept's final embedding (one with one concept)
    concept_validation_losses: list = field(default_factory=list)  # several concepts: (step, {token string: loss})


def clip_gradients(accelerator, tokens, max_norm: float) -> None:
    """Clip each concept's gradient on its own (all its vectors, every encoder): one concept's large gradient never
    shrinks another's step, so each trains as its own run would."""
    if len(tokens.concepts) == 1:
        accelerator.clip_grad_norm_(tokens.parameters(), max_norm)
        return
    accelerator.unscale_gradients()  # fp16: once per step, before the norms are read
    for unit in tokens.concepts:
        torch.nn.utils.clip_grad_norm_(unit.parameters(), max_norm)


def _trainable_tokens(args: argparse.Namespace, models, family, concepts):
    """The run's new tokens in every tokenizer, backed by fp32 vectors: one concept, or several with a parameter each."""
    trained = family.trained_encoders(getattr(args, "ti_text_encoders", None))
    if len(concepts) > 1:  # each concept's tokens added once, each with its own parameter (and optimizer param group)
        return setup_concept_tokens(models.tokenizers, models.text_encoders, list(family.slots), concepts, trained=trained)
    concept = concepts[0]
    initial_vectors = model_setup.read_initial_vectors(args.weights, family.slots, models, concept.num_vectors) if args.weights else None
    return setup_trainable_tokens(models.tokenizers, models.text_encoders, list(family.slots), token_string=concept.token_string,
                                  num_vectors=concept.num_vectors, init_word=concept.init_word, initial_vectors=initial_vectors,
                                  trained=trained)


def _freeze(args: argparse.Namespace, models, weight_dtype: torch.dtype) -> dict:
    """Every model weight frozen in the mixed-precision dtype (U-Net in float8 with --fp8_base); returns the loaded
    bytes by dtype for the memory estimate, counted before the VAE may be freed."""
    for module in (models.unet, *models.text_encoders):
        module.requires_grad_(False).to(weight_dtype)
    models.vae.requires_grad_(False).to(torch.float32 if args.no_half_vae else weight_dtype)
    loaded = memory_estimate.weight_bytes_by_dtype([models.unet, *models.text_encoders, models.vae])
    if args.fp8_base:
        from library.models.fp8_storage import store_in_fp8

        logger.info("--fp8_base: %d U-Net layers store their weights in float8", store_in_fp8(models.unet, weight_dtype))
    return loaded


def _cache_latents(args: argparse.Namespace, accelerator, models, group, val_group) -> None:
    """--cache_latents(_to_disk): encode every image once (main process first, so others read its disk cache), then
    move the VAE off the device, or free it when nothing will decode again."""
    device = accelerator.device
    models.vae.to(device)
    if not (args.cache_latents or args.cache_latents_to_disk):
        return
    with accelerator.main_process_first():
        data_setup.cache_latents(args, group, models.vae, device)
        if val_group is not None:
            data_setup.cache_latents(args, val_group, models.vae, device)
    if sampling_wanted(args):
        models.vae.to("cpu")  # every latent is cached: the VAE leaves the device until sampling decodes with it
    else:
        models.vae = None  # nothing encodes or decodes again: free its memory (0.3 GiB for SD1.5 in fp32)


def _optimizer(args: argparse.Namespace, tokens, concepts, num_processes: int):
    """The optimizer over the new vectors only; returns it, its name and each concept's learning rate."""
    learning_rate = base_learning_rate(args, num_processes)
    cli_rate = base_learning_rate(argparse.Namespace(**{**vars(args), "scale_lr": False}), 1)
    rates = [concept_learning_rate(c, learning_rate, cli_rate) for c in concepts]
    if len(concepts) == 1:
        optimizer, name = build_optimizer_for(args, tokens.parameters(), rates[0])
    else:  # one optimizer, one param group per concept (its own learning rate), one LR schedule scaling every group
        optimizer, name = build_optimizer_for(args, tokens.param_groups(rates), learning_rate)
    return optimizer, name, rates


def _file_stems(args: argparse.Namespace, concepts) -> list[str]:
    """Each concept's embedding file name without its extension (a lone concept's config `output_name` wins)."""
    if len(concepts) == 1 and concepts[0].output_name:
        return [concepts[0].output_name]
    return [c.file_stem(len(concepts) == 1, args.output_name) for c in concepts]


def _restore(state_dir, run, tokens, optimizer, lr_scheduler, accelerator) -> Progress:
    """--resume: the vectors, optimizer, LR schedule and fp16 loss scale of a saved state; returns its progress."""
    vectors, optimizer_state, scheduler_state, progress = load_state(state_dir)
    progress.run = run  # a state of an older version gains the record in its next save
    tokens.load_vectors(vectors)
    optimizer.load_state_dict(optimizer_state)
    lr_scheduler.load_state_dict(scheduler_state)
    if progress.scaler and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(progress.scaler)
    return progress


@dataclass
class _BatchRunner:
    """One batch's forward, backward and (at the end of an accumulation) optimizer step, and what the run counts."""

    args: argparse.Namespace
    models: object
    family: object
    text_encoders: list
    settings: StepSettings
    accelerator: object
    snr: torch.Tensor
    tokens: object
    optimizer: object
    seed: int
    skipped_backwards: int = 0  # batches whose captions hold no trained token (see zero_gradient)
    overflow_skipped: int = 0  # fp16 steps the loss scaler skipped: the vectors were not written (see precision)
    concept_losses: dict = field(default_factory=dict)  # several concepts: each concept's losses, step by step

    def run(self, batch: dict, global_step: int, micro_step: int) -> float | None:
        """The batch's loss (several concepts: the mean of theirs); None when --skip_nan dropped it."""
        args, accelerator = self.args, self.accelerator
        concept_batches = batch.get("concept_batches")
        with accelerator.accumulate(*self.text_encoders):
            captions = [c for b in concept_batches for c in b["captions"]] if concept_batches else batch["captions"]
            # every process must run every backward under DDP, so only a single process skips them
            needs_backward = accelerator.num_processes > 1 or batch_reaches_vectors(self.tokens, self.models.tokenizers, captions,
                                                                                     self.settings.conditioning.max_token_length)
            # a compiled UNet would recompile for no-grad mode: it keeps the graph, and only the backward is skipped
            with torch.set_grad_enabled(needs_backward or args.torch_compile):
                loss, per_concept = self._loss(batch, concept_batches, global_step, micro_step, needs_backward)
            # several concepts: the summed loss trains, the mean is logged (comparable with a single run's)
            loss_value = loss.detach().item() / (len(concept_batches) if concept_batches else 1)
            if not math.isfinite(loss_value) and args.skip_nan:
                logger.warning("step %d: loss is %s; skipped this batch (--skip_nan)", global_step + 1, loss_value)
                self.optimizer.zero_grad(set_to_none=True)
                return None
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(
                    f"the loss became {loss_value} at step {global_step + 1}; stopped and kept the last good vectors. "
                    "Lower --learning_rate, use --mixed_precision bf16 or no instead of fp16, add --no_half_vae, or pass --skip_nan"
                )
            for index, value in per_concept.items():
                self.concept_losses.setdefault(index, []).append(value)
            if not needs_backward:
                self.skipped_backwards += 1
            elif not (concept_batches and args.separate_concept_passes):  # separate passes ran their own backwards
                accelerator.backward(loss)
            if accelerator.sync_gradients:
                fill_missing_gradients(self.tokens.parameters())
            if accelerator.sync_gradients and args.max_grad_norm:
                clip_gradients(accelerator, self.tokens, args.max_grad_norm)
            self.optimizer.step()
            if accelerator.sync_gradients and step_was_skipped(self.optimizer):
                self.overflow_skipped += 1
                logger.debug("step %d: fp16 gradients overflowed; the loss scaler skipped the update", global_step + 1)
            self.optimizer.zero_grad(set_to_none=True)
        return loss_value

    def _loss(self, batch: dict, concept_batches, global_step: int, micro_step: int, needs_backward: bool) -> tuple[torch.Tensor, dict]:
        accelerator = self.accelerator
        if concept_batches:
            # --separate_concept_passes: each concept's backward runs before the next concept's forward
            backward = accelerator.backward if self.args.separate_concept_passes and needs_backward else None
            return lockstep_step(concept_batches, self.models, self.family, self.text_encoders, self.settings, accelerator, self.snr,
                                 seed=self.seed, step=global_step, micro_step=micro_step, backward=backward)
        generators = sample_generators(self.seed, global_step, len(batch["captions"]), accelerator.process_index, accelerator.num_processes, micro_step)
        return training_step(batch, self.models, self.family, self.text_encoders, self.settings, generators, accelerator, self.snr), {}


def _report_end(args: argparse.Namespace, runner: _BatchRunner, accelerator, steps_run: int, losses: list[float], concepts, stems: list[str],
                final, final_paths: list, estimate) -> None:
    """The main process's closing lines: skipped backwards, fp16 loss scaling, loss charts, and the measured peak memory."""
    if runner.skipped_backwards:
        logger.info(
            "%d batch(es) had no trained token in their captions (regularisation images, captions without the token string or with it truncated away): "
            "their gradient is exactly zero, so their backward pass was skipped", runner.skipped_backwards,
        )
    if accelerator.scaler is not None:
        logger.info("fp16 loss scaling: %d of %d optimizer step(s) skipped because their gradients overflowed; final loss scale %g",
                    runner.overflow_skipped, steps_run, accelerator.scaler.get_scale())
    if len(concepts) == 1:
        chart = draw_loss_chart(losses, Path(args.output_dir) / f"{args.output_name or 'last'}_loss.png", title=f"loss ({args.output_name or 'last'})")
        logger.info("saved %s%s", final, f" and the loss chart {chart}" if chart else "")
    for index, values in sorted(runner.concept_losses.items()):  # several concepts: each its own chart, beside its file
        chart = draw_loss_chart(values, Path(args.output_dir) / f"{stems[index]}_loss.png",
                                title=f"loss of {concepts[index].token_string!r} ({stems[index]})")
        logger.info("saved %s%s", final_paths[index] if index < len(final_paths) else stems[index], f" and its loss chart {chart}" if chart else "")
    device = accelerator.device
    measured = memory_estimate.measured_peak_bytes(device)
    logger.info("memory: measured peak %.2f GiB on %s (%s; estimated %.2f GiB)", measured / memory_estimate.GIB, device,
                "max_memory_allocated" if device.type == "cuda" else "peak RSS", estimate.total / memory_estimate.GIB)


def _unwrap_batch(items: list[dict]) -> dict:
    # each dataset item is already a whole bucket-homogeneous batch
    return items[0]


def train(args: argparse.Namespace, *, sdxl: bool) -> TrainResult:
    """Run a TI training described by the parsed flags; returns the final embedding path."""
    configure_console_logging(args)  # --console_log_level/_file/_simple, before anything is logged
    check_training_flags(args, sdxl=sdxl)  # every flag problem at once, before any model is loaded
    saved = read_progress(args.resume) if args.resume else None
    if saved is not None:
        adopt_saved_seed(args, saved)  # the data order and noise follow the state's seed
    keep_freed_memory()  # reuse activation memory between steps instead of page-faulting it in again
    accelerator = make_accelerator(args)
    if args.seed is not None:
        set_seed(args.seed)
    seed = args.seed if args.seed is not None else 0
    is_main = accelerator.is_main_process
    # where the run writes is checked before minutes of model loading (issue 19): a run never dies at its first save
    preflight.prepare_output(args, is_main=is_main)
    # the concepts the run trains (issue 17): one from the flags, or several named by the dataset config's subsets
    dataset_params = data_setup.dataset_params(args)
    concepts = resolve_concepts(dataset_params, args)
    if is_main and len(concepts) > 1:  # each concept's file name is locked like --output_name: two runs never write one file
        for concept in concepts:
            preflight.lock_output_name(Path(args.output_dir or "."), concept.file_stem(False, args.output_name))

    # --- models: frozen weights in the mixed-precision dtype, then fp32 trainable vectors behind the vocabulary
    models = model_setup.load_models_for(args, sdxl=sdxl)
    family = family_for(models.family)
    weight_dtype = weight_dtype_for(args)
    loaded_weight_bytes = _freeze(args, models, weight_dtype)
    tokens = _trainable_tokens(args, models, family, concepts)

    # --- data: captions rewritten to the N tokens, validated as a whole before any compute is spent
    group, val_group, templates = data_setup.build_datasets(args, tokens, dataset_params)
    if len(concepts) == 1:
        data_setup.check_token_in_captions(group, tokens.token_string, templates_used=bool(templates))
    else:
        data_setup.check_concepts(group, concepts, templates_used=bool(templates))
    warn_if_captions_overflow(group, models.tokenizers[0], tokens, token_window(args))
    if args.debug_dataset:
        data_setup.debug_dataset(args, group, models.tokenizers)
        return TrainResult(None, 0, models=models, tokens=tokens)
    run = run_identity(args, models.family, group, accelerator.num_processes)
    if saved is not None:
        check_resume(args.resume, saved, run, tokens.names)  # before latents are cached: refusing costs no compute
    device = accelerator.device
    settings = StepSettings.from_args(args, models)
    _cache_latents(args, accelerator, models, group, val_group)
    # several concepts train in lockstep: every step gives each concept one batch of its own images
    train_data = group if len(concepts) == 1 else ConceptLockstep(group, len(concepts))
    dataloader = DataLoader(
        train_data,
        batch_size=1,
        shuffle=False,  # the order is the dataset's own pure function of (seed, epoch)
        collate_fn=_unwrap_batch,
        num_workers=min(args.max_data_loader_n_workers, data_setup.cpu_workers()),
        persistent_workers=args.persistent_data_loader_workers and args.max_data_loader_n_workers > 0,
        pin_memory=device.type == "cuda",  # with the accelerator's non_blocking copies, the upload overlaps the step
    )

    # --- optimization: only the new vectors are parameters
    steps_per_epoch, num_epochs, max_steps = total_steps(args, len(dataloader), accelerator.num_processes)
    train_data.set_max_train_steps(max_steps)  # --token_warmup_step may be a ratio of the run
    optimizer, optimizer_name, rates = _optimizer(args, tokens, concepts, accelerator.num_processes)
    lr_scheduler = build_lr_scheduler_for(args, optimizer, max_steps)
    for module in (models.unet, *models.text_encoders):
        module.to(device)
    if args.gradient_checkpointing:
        model_setup.enable_gradient_checkpointing(models)
    model_setup.set_attention(args, models.unet)
    if args.torch_compile:
        model_setup.compile_unet(args, models.unet)
    stems = _file_stems(args, concepts)
    prepared = accelerator.prepare(*models.text_encoders, optimizer, dataloader)
    text_encoders, optimizer, dataloader = list(prepared[:-2]), prepared[-2], prepared[-1]

    progress = Progress(seed=seed, token_names=tokens.names, slots=list(family.slots), run=run)
    if args.resume:
        progress = _restore(args.resume, run, tokens, optimizer, lr_scheduler, accelerator)

    if is_main:
        print_summary(args, models, family, tokens, group, val_group, optimizer_name, steps_per_epoch, num_epochs, max_steps, accelerator, weight_dtype,
                      stems=stems, batches_per_epoch=len(train_data), init_word=concepts[0].init_word)
        if len(concepts) > 1:
            print("\n".join(concept_summary_lines(concepts, tokens, train_data, rates, stems)), flush=True)
        estimate = memory_estimate.estimate_for_run(
            models, tokens, group, device, loaded_weight_bytes, gradient_checkpointing=args.gradient_checkpointing,
            activation_dtype=weight_dtype, max_token_length=args.max_token_length, optimizer=optimizer,
            pass_groups=train_data.views if len(concepts) > 1 and not args.separate_concept_passes else None,
        )
        print("\n".join(estimate.lines()), flush=True)
    start_tracking(accelerator, args)
    hasher = ModelHasher(args.pretrained_model_name_or_path) if is_main and Path(args.pretrained_model_name_or_path).exists() else None
    saver = Saver(args, models, family, tokens, hasher, accelerator, data_setup.training_resolution(group, family), num_epochs, stems=stems)
    if is_main:
        vector_bytes = sum(v.numel() * 4 for v in tokens.vectors_by_slot().values())
        preflight.check_free_space(args, vector_bytes, max_steps, num_epochs)
    if args.zero_terminal_snr:
        apply_zero_terminal_snr(models.noise_scheduler)
    snr = snr_table(models.noise_scheduler).to(device)
    sampler = Sampler(args, models, tokens, accelerator, group)
    saver.preview = sampler.preview_image
    validator = Validator(args, val_group, models, family, text_encoders, settings, accelerator, seed, snr)

    losses: list[float] = []
    runner = _BatchRunner(args, models, family, text_encoders, settings, accelerator, snr, tokens, optimizer, seed)
    global_step = progress.global_step
    progress_start = global_step
    bar = tqdm(total=max_steps, initial=global_step, smoothing=0, disable=not is_main, desc="steps")
    if args.sample_at_first and global_step == 0:
        sampler.sample(step=0)

    optimizer_train_mode(optimizer)
    for module in text_encoders:
        module.train(args.gradient_checkpointing)  # checkpointing only runs in train mode; CLIP has no dropout
    models.unet.train(args.gradient_checkpointing)
    try:
        for epoch in range(progress.epoch, num_epochs):
            skip = progress.batches_in_epoch if epoch == progress.epoch else 0
            loader = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
            # accelerate's loaders pass their own iteration count to dataset.set_epoch when iterated; set it to
            # the real epoch so the (seed, epoch) data order survives resuming
            loader.set_epoch(epoch)
            batches_done = skip
            for batch in loader:
                micro_step = batches_done % args.gradient_accumulation_steps
                batches_done += 1
                train_data.set_step(global_step)
                loss_value = runner.run(batch, global_step, micro_step)
                if loss_value is None:
                    continue
                if not accelerator.sync_gradients:
                    continue
                lr_scheduler.step()
                global_step += 1
                losses.append(loss_value)
                bar.update(1)
                bar.set_postfix(avr_loss=sum(losses[-100:]) / len(losses[-100:]), loss=loss_value)
                if accelerator.trackers:
                    accelerator.log({"loss/current": loss_value, "lr": lr_scheduler.get_last_lr()[0]}, step=global_step)
                progress.global_step, progress.epoch, progress.batches_in_epoch = global_step, epoch, batches_done
                saver.after_step(progress, optimizer, lr_scheduler)
                sampler.after_step(global_step)
                validator.after_step(global_step)
                if global_step >= max_steps:
                    break
            progress.epoch, progress.batches_in_epoch = epoch + 1, 0
            saver.after_epoch(epoch + 1, progress, optimizer, lr_scheduler)
            sampler.after_epoch(global_step, epoch + 1)
            validator.after_epoch(epoch + 1, global_step)
            if global_step >= max_steps:
                break
    except NonFiniteLoss:
        saver.save_final(global_step, progress.epoch)
        raise
    except KeyboardInterrupt:
        if is_main:
            path = saver.save_final(global_step, progress.epoch)
            logger.warning("interrupted at step %d: saved the current embedding to %s", global_step, path)
        raise
    finally:
        bar.close()

    final = saver.save_final(global_step, progress.epoch)
    if args.save_state or args.save_state_on_train_end:
        saver.save_final_state(progress, optimizer, lr_scheduler)
    if is_main:
        _report_end(args, runner, accelerator, global_step - progress_start, losses, concepts, stems, final, saver.final_paths, estimate)
    accelerator.end_training()
    preflight.release_output_locks()  # the output name is free for the next run in this process or another
    return TrainResult(final, global_step, losses, models, tokens, runner.skipped_backwards, validator.losses, runner.overflow_skipped,
                       output_files=saver.final_paths, concept_validation_losses=validator.concept_losses)

