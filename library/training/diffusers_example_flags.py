"""The diffusers Textual Inversion example's flags, accepted by our trainers with the example's meaning.

Someone following the diffusers guide runs `textual_inversion.py --placeholder_token=<cat-toy> --initializer_token=toy
--learnable_property=object ...`. `add_diffusers_example_arguments` adds every flag of that script that our parser
lacks (flags both tools share, such as --learning_rate, are already ours), and `apply_diffusers_example_args`
translates them onto our settings once parsing is done, before any other check:

- placeholder_token -> token_string, initializer_token -> init_word, num_vectors -> num_vectors_per_token, ...;
- the same setting given in both styles (--placeholder_token and --token_string) is an error naming both;
- hub flags are refused (nothing here uploads), and the token is never echoed;
- using any diffusers-only flag switches the output layout to the example's (`learned_embeds.safetensors` in
  --output_dir, see `library.training.diffusers_outputs`) unless --output_name asks for ours.

The example's flags are written down in `tests/library/training/test_diffusers_example_flags.py` with the diffusers
commit they came from. Every added flag defaults to None, so "given" and "not given" stay distinguishable.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from library.errors import UserError

logger = logging.getLogger(__name__)

LEARNABLE_PROPERTIES = ("object", "style")
HUB_FLAGS = ("push_to_hub", "hub_token", "hub_model_id")

# our flag <- the example's flag, for settings both tools have under different names
RENAMED = {
    "placeholder_token": "token_string",
    "initializer_token": "init_word",
    "num_vectors": "num_vectors_per_token",
    "num_train_epochs": "max_train_epochs",
    "save_steps": "save_every_n_steps",
    "lr_num_cycles": "lr_scheduler_num_cycles",
    "dataloader_num_workers": "max_data_loader_n_workers",
    "repeats": "dataset_repeats",
    "resume_from_checkpoint": "resume",
}
# the example's defaults where they differ from ours and are applied only in the example's style
EXAMPLE_DEFAULTS = {"output_dir": "text-inversion-model", "resolution": (512, 512), "dataset_repeats": 100}


def _flags(sdxl: bool) -> list[tuple[str, dict]]:
    """(flag, argparse keywords) of the example's flags that are not ours; every default is None."""
    as_int = {"type": int, "default": None}
    flag = {"action": "store_true", "default": None}
    flags = [
        ("--placeholder_token", {"type": str, "default": None, "help": "diffusers example: the new token (our --token_string)"}),
        ("--initializer_token", {"type": str, "default": None, "help": "diffusers example: the word the vectors start from (our --init_word)"}),
        ("--num_vectors", {**as_int, "help": "diffusers example: vectors for the concept (our --num_vectors_per_token)"}),
        ("--learnable_property", {"type": str, "default": None,
                                  "help": "diffusers example: 'object' or 'style' prompt templates (our --use_object_template / --use_style_template)"}),
        ("--repeats", {**as_int, "help": "diffusers example: repeats of each image of a flat --train_data_dir per epoch (default there: 100)"}),
        ("--center_crop", {**flag, "help": "diffusers example: centre-crop to a square before resizing (without buckets, ours always centre-crops)"}),
        ("--num_train_epochs", {**as_int, "help": "diffusers example: epochs to train, used when --max_train_steps is not given (our --max_train_epochs)"}),
        ("--save_steps", {**as_int, "help": "diffusers example: write learned_embeds-steps-N.safetensors every N steps"}),
        ("--checkpointing_steps", {**as_int, "help": "diffusers example: save a resumable state OUTPUT_DIR/checkpoint-N every N steps"}),
        ("--checkpoints_total_limit", {**as_int, "help": "diffusers example: keep at most this many checkpoint-N states"}),
        ("--resume_from_checkpoint", {"type": str, "default": None,
                                      "help": "diffusers example: resume from a checkpoint-N folder, or 'latest' in --output_dir (our --resume)"}),
        ("--validation_prompt", {"type": str, "default": None, "help": "diffusers example: prompt for sample images during training"}),
        ("--num_validation_images", {**as_int, "help": "diffusers example: images per validation (default there: 4)"}),
        ("--validation_steps", {**as_int, "help": "diffusers example: sample the validation prompt every N steps (default there: 100)"}),
        ("--report_to", {"type": str, "default": None, "help": "diffusers example: tensorboard, wandb or all (our --log_with)"}),
        ("--adam_beta1", {"type": float, "default": None, "help": "diffusers example: AdamW beta1 (our --optimizer_args betas=...)"}),
        ("--adam_beta2", {"type": float, "default": None, "help": "diffusers example: AdamW beta2 (our --optimizer_args betas=...)"}),
        ("--adam_weight_decay", {"type": float, "default": None, "help": "diffusers example: AdamW weight decay (our --optimizer_args weight_decay=...)"}),
        ("--adam_epsilon", {"type": float, "default": None, "help": "diffusers example: AdamW epsilon (our --optimizer_args eps=...)"}),
        ("--lr_num_cycles", {**as_int, "help": "diffusers example: restarts of cosine_with_restarts (our --lr_scheduler_num_cycles)"}),
        ("--dataloader_num_workers", {**as_int, "help": "diffusers example: loader workers (our --max_data_loader_n_workers)"}),
        ("--allow_tf32", {**flag, "help": "diffusers example: allow TF32 matrix products on Ampere and newer GPUs"}),
        ("--enable_xformers_memory_efficient_attention", {**flag, "help": "diffusers example: xformers attention (our --xformers)"}),
        ("--tokenizer_name", {"type": str, "default": None,
                              "help": "diffusers example: a tokenizer folder; must be the model's own (the tokenizers are bundled)"}),
        ("--revision", {"type": str, "default": None, "help": "diffusers example: hub revision; refused with a hub model id, no effect on a local path"}),
        ("--variant", {"type": str, "default": None, "help": "diffusers example: weights variant such as fp16 (a diffusers folder holding only that variant is read as it is; otherwise a warning says which weights are used)"}),
        ("--save_as_full_pipeline", {**flag, "help": "diffusers example: also save a full diffusers pipeline with the new token in --output_dir"}),
        ("--only_save_embeds", {**flag, "help": "older diffusers example: save only the embeddings (what this suite always does)"}),
        ("--push_to_hub", {**flag, "help": "diffusers example: refused, uploading is not part of this suite"}),
        ("--hub_token", {"type": str, "default": None, "help": "diffusers example: refused, uploading is not part of this suite"}),
        ("--hub_model_id", {"type": str, "default": None, "help": "diffusers example: refused, uploading is not part of this suite"}),
    ]
    if not sdxl:  # only the SD 1.x/2.x script has these two
        flags += [
            ("--validation_epochs", {**as_int, "help": "diffusers example: sample the validation prompt every N epochs"}),
            ("--no_safe_serialization", {**flag, "help": "diffusers example: write learned_embeds.bin (torch pickle) instead of .safetensors"}),
        ]
    return flags


def add_diffusers_example_arguments(parser: argparse.ArgumentParser, sdxl: bool = False) -> None:
    """Add the diffusers example's flags that `parser` lacks, in their own help group."""
    group = parser.add_argument_group("diffusers example (examples/textual_inversion) compatibility, see docs/migrating.md")
    for flag, kwargs in _flags(sdxl):
        if flag not in parser._option_string_actions:
            group.add_argument(flag, **kwargs)


def diffusers_flags_given(args: argparse.Namespace) -> list[str]:
    """The diffusers-only flags set on this command line (in the example's spelling)."""
    return [f.lstrip("-") for f, _ in _flags(False) if getattr(args, f.lstrip("-"), None) is not None]


def apply_diffusers_example_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Translate the example's flags onto ours in place; UserError for refused or doubly-given settings."""
    given = diffusers_flags_given(args)
    args._diffusers_style = bool(given)
    if not given:
        return args
    _refuse_hub(args)

    def ours_given(name: str) -> bool:
        return getattr(args, name, None) != parser.get_default(name)

    for theirs, ours in RENAMED.items():
        value = getattr(args, theirs, None)
        if value is None:
            continue
        if ours_given(ours):
            raise UserError(f"--{theirs} (diffusers example) and --{ours} set the same thing; give only one of them")
        setattr(args, ours, value)

    if args.learnable_property is not None:
        if args.learnable_property not in LEARNABLE_PROPERTIES:
            raise UserError(f"--learnable_property must be 'object' or 'style', got {args.learnable_property!r}")
        others = [f"--{f}" for f in ("use_object_template", "use_style_template", "template_file") if getattr(args, f, None)]
        if others:
            raise UserError(f"--learnable_property and {others[0]} both choose the prompt templates; give only one of them")
        setattr(args, f"use_{args.learnable_property}_template", True)
    elif _flat_train_data_dir(args) and not any(getattr(args, f, None) for f in ("use_object_template", "use_style_template", "template_file")):
        args.use_object_template = True  # the example's default learnable_property, for its layout

    if args.num_train_epochs is not None and ours_given("max_train_steps"):
        logger.warning("--max_train_steps %d overrides --num_train_epochs %d, as in the diffusers example", args.max_train_steps, args.num_train_epochs)
        args.max_train_epochs = None
    _apply_optimizer_flags(args, parser)
    _apply_sampling_flags(args, parser)
    _apply_checkpoint_flags(args)
    _apply_speed_and_model_flags(args)
    if args.report_to is not None:
        if ours_given("log_with"):
            raise UserError("--report_to (diffusers example) and --log_with set the same thing; give only one of them")
        if args.report_to not in ("tensorboard", "wandb", "all"):
            raise UserError(f"--report_to {args.report_to}: this suite logs to tensorboard, wandb or all")
        args.log_with = args.report_to
        if args.logging_dir is None:
            args.logging_dir = os.path.join(args.output_dir or EXAMPLE_DEFAULTS["output_dir"], "logs")  # the example's default
    if args.only_save_embeds and args.save_as_full_pipeline:
        raise UserError("--only_save_embeds and --save_as_full_pipeline contradict each other; give only one of them")
    if args.output_dir is None:
        args.output_dir = EXAMPLE_DEFAULTS["output_dir"]
    if args.resolution is None:
        args.resolution = EXAMPLE_DEFAULTS["resolution"]
    if args.repeats is None and not ours_given("dataset_repeats"):
        args.dataset_repeats = EXAMPLE_DEFAULTS["dataset_repeats"]  # used by a flat --train_data_dir only
    args.center_crop = bool(args.center_crop)
    if args.center_crop and getattr(args, "random_crop", False):
        raise UserError("--center_crop (diffusers example) and --random_crop contradict each other; give only one of them")
    args._diffusers_outputs = not args.output_name  # the example's file names, unless --output_name asks for ours
    return args


def _flat_train_data_dir(args: argparse.Namespace) -> bool:
    from library.dataset.flat_folder import is_flat_folder

    return bool(getattr(args, "train_data_dir", None)) and not getattr(args, "dataset_config", None) and is_flat_folder(args.train_data_dir)


def _refuse_hub(args: argparse.Namespace) -> None:
    hub = [f"--{f}" for f in HUB_FLAGS if getattr(args, f, None)]
    if hub:
        # the token's value is deliberately left out of the message
        raise UserError(
            f"{', '.join(hub)}: uploading is not part of this suite; train locally, then upload --output_dir yourself "
            "(e.g. `huggingface-cli upload`)"
        )


def _apply_optimizer_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    adam = {"adam_beta1": args.adam_beta1, "adam_beta2": args.adam_beta2, "adam_weight_decay": args.adam_weight_decay, "adam_epsilon": args.adam_epsilon}
    adam = {k: v for k, v in adam.items() if v is not None}
    if not adam:
        return
    if args.optimizer_args:
        raise UserError(f"--{next(iter(adam))} (diffusers example) and --optimizer_args both set optimizer options; give only one style")
    options = []
    if "adam_beta1" in adam or "adam_beta2" in adam:
        options.append(f"betas={adam.get('adam_beta1', 0.9)},{adam.get('adam_beta2', 0.999)}")  # the example's defaults
    if "adam_weight_decay" in adam:
        options.append(f"weight_decay={adam['adam_weight_decay']}")
    if "adam_epsilon" in adam:
        options.append(f"eps={adam['adam_epsilon']}")
    args.optimizer_args = options


def _apply_sampling_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    validation_flags = [f for f in ("num_validation_images", "validation_steps", "validation_epochs") if getattr(args, f, None) is not None]
    if args.validation_prompt is None:
        if validation_flags:
            logger.warning("--%s has no effect without --validation_prompt (as in the diffusers example)", validation_flags[0])
        return
    if args.sample_prompts:
        raise UserError("--validation_prompt (diffusers example) and --sample_prompts both set the sample prompts; give only one of them")
    args._sample_prompt_lines = [args.validation_prompt] * (args.num_validation_images or 4)
    epochs = getattr(args, "validation_epochs", None)
    if epochs is not None:
        if args.sample_every_n_epochs is not None:
            raise UserError("--validation_epochs (diffusers example) and --sample_every_n_epochs set the same thing; give only one of them")
        args.sample_every_n_epochs = epochs
    elif args.sample_every_n_steps is None and args.sample_every_n_epochs is None:
        args.sample_every_n_steps = args.validation_steps or 100
    elif args.validation_steps is not None:
        raise UserError("--validation_steps (diffusers example) and --sample_every_n_steps/--sample_every_n_epochs set the same thing; give only one")


def _apply_checkpoint_flags(args: argparse.Namespace) -> None:
    if args.checkpoints_total_limit is not None and args.checkpointing_steps is None:
        logger.warning("--checkpoints_total_limit has no effect without --checkpointing_steps")
    if args.checkpointing_steps is not None and args.checkpointing_steps < 1:
        raise UserError(f"--checkpointing_steps must be at least 1, got {args.checkpointing_steps}")
    if args.resume == "latest" and args.resume_from_checkpoint == "latest":
        args.resume = latest_checkpoint(args.output_dir or EXAMPLE_DEFAULTS["output_dir"])


def latest_checkpoint(output_dir: str) -> str:
    """The `checkpoint-N` folder with the highest N in `output_dir`; UserError when there is none."""
    folder = Path(output_dir)
    found = []
    if folder.is_dir():
        for entry in folder.iterdir():
            head, _, number = entry.name.partition("-")
            if entry.is_dir() and head == "checkpoint" and number.isdigit():
                found.append((int(number), entry))
    if not found:
        raise UserError(f"--resume_from_checkpoint latest: no checkpoint-N folder in {folder} to resume from (they are written by --checkpointing_steps)")
    return str(max(found)[1])


def _apply_speed_and_model_flags(args: argparse.Namespace) -> None:
    if args.enable_xformers_memory_efficient_attention:
        args.xformers = True
    if args.allow_tf32:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = args.pretrained_model_name_or_path or ""
    if args.revision is not None and not Path(model).exists():
        raise UserError(f"--revision {args.revision}: models are loaded from local paths only; download the revision first and pass its folder")
    if args.revision is not None:
        logger.warning("--revision %s has no effect on the local model %s", args.revision, model)
    if args.variant is not None:
        variant_files = list(Path(model).glob(f"*/*.{args.variant}.*"))
        regular_files = [p for p in Path(model).glob("*/diffusion_pytorch_model.*") if p.suffixes[:1] != [f".{args.variant}"]]
        if not variant_files:
            logger.warning("--variant %s: %s has no files of that variant; its regular weights are used", args.variant, model)
        elif regular_files:
            logger.warning("--variant %s: %s also has regular weights, and those are used (a variant is loaded only from a "
                           "folder without regular weights)", args.variant, model)
    if args.tokenizer_name is not None:
        logger.warning(
            "--tokenizer_name %s: the CLIP tokenizers are bundled with this suite and always used; a different tokenizer "
            "would not match the text encoder", args.tokenizer_name,
        )
