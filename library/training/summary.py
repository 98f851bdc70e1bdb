"""The summary printed before the first step: what will be trained, on what, for how long."""

from __future__ import annotations

import argparse

from library.training.precision import loss_scaling_line

from library.training import diffusers_outputs


def summary_lines(args: argparse.Namespace, models, family, tokens, group, val_group, optimizer_name: str, steps_per_epoch: int,
                  num_epochs: int, max_steps: int, accelerator, weight_dtype, *, stems: list[str] | None = None,
                  batches_per_epoch: int | None = None, init_word: str | None = None) -> list[str]:
    """`stems` (the files written, one per concept), `batches_per_epoch` (the loader's length) and `init_word` (the
    concept's, which a dataset config may set) when they differ from the flags' one-concept values."""
    prediction = "v-prediction" if models.v_parameterization else "epsilon"
    trainable = sum(p.numel() for p in tokens.parameters())
    ids = ", ".join(f"{n}={i}" for n, i in zip(tokens.names, tokens.ids[0]))
    several = len(tokens.concepts) > 1
    extension = args.save_model_as or "safetensors"
    lines = [
        "Textual Inversion training",
        f"  model:            {args.pretrained_model_name_or_path} ({family.display_name}, {prediction})",
        (f"  new tokens:       {len(tokens.concepts)} concepts, {len(tokens.names)} vector(s) in all: {ids}" if several
         else f"  new tokens:       {tokens.token_string!r} -> {len(tokens.names)} vector(s): {ids}"),
        ("  init word:        per concept (see the concepts below)" if several
         else f"  init word:        {(init_word if init_word is not None else args.init_word) or '*'}" + (f"; continuing from --weights {args.weights}" if args.weights else "")),
        f"  trainable params: {trainable:,} ({' + '.join(f'{slot} {tuple(e.vectors.shape)}' for slot, e, on in zip(tokens.slots, tokens.embeddings, tokens.trained) if on)})",
        f"  images:           {group.num_train_images} train, {group.num_reg_images} regularisation"
        + (f", validation split {len(val_group)} batch(es)" if val_group is not None else ""),
    ]
    lines += [f"    {line}" for line in group.summary_lines()]
    lines += [
        f"  batches/epoch:    {batches_per_epoch if batches_per_epoch is not None else len(group)} (x{accelerator.num_processes} process(es), gradient accumulation {args.gradient_accumulation_steps})",
        f"  steps:            {max_steps} optimizer steps = {num_epochs} epoch(s) x {steps_per_epoch} step(s)",
        f"  optimizer:        {optimizer_name}, learning rate {args.learning_rate}, scheduler {args.lr_scheduler}",
        f"  precision:        {args.mixed_precision} (frozen weights {str(weight_dtype).removeprefix('torch.')}, vectors float32)"
        + (", gradient checkpointing" if args.gradient_checkpointing else "")
        + (", no autocast (--full_fp16/--full_bf16)" if getattr(args, "full_fp16", False) or getattr(args, "full_bf16", False) else "")
        + (", VAE float32 (--no_half_vae)" if args.no_half_vae and args.mixed_precision != "no" else ""),
        *([f"  loss scaling:     {line}"] if (line := loss_scaling_line(accelerator)) else []),
        f"  device:           {accelerator.device}",
        f"  output:           {args.output_dir}/"
        + (diffusers_outputs.embedding_file_name(args) if getattr(args, "_diffusers_outputs", False)
           else ", ".join(f"{stem}.{extension}" for stem in (stems or [args.output_name or "last"]))),
    ]
    return lines


def print_summary(*a, **kw) -> None:
    print("\n".join(summary_lines(*a, **kw)), flush=True)
