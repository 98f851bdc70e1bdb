"""From flags to training data: dataset group, templates, the token check, latent cache, --debug_dataset."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch

from library.errors import UserError
from library.tokens import contains_token, near_misses

logger = logging.getLogger(__name__)


def cpu_workers() -> int:
    return max(0, (os.cpu_count() or 1) - 1)


def resolve_templates(args: argparse.Namespace) -> list[str] | None:
    """Caption templates: --use_object_template / --use_style_template / --template_file, or None."""
    from library.dataset import templates

    if args.use_object_template:
        return templates.builtin_templates("object")
    if args.use_style_template:
        return templates.builtin_templates("style")
    if args.template_file:
        return templates.read_template_file(args.template_file)
    return None  # flag_rules already refused more than one source


def dataset_params(args: argparse.Namespace):
    """The validated dataset settings the flags describe (--dataset_config's TOML or the CLI-only forms)."""
    from library.dataset.config import dataset_params_from_args

    return dataset_params_from_args(args)


def build_datasets(args: argparse.Namespace, tokens, params=None):
    """(train group, validation group or None, templates) with captions rewritten to the N new tokens.

    `params` are the dataset settings already read (and their subsets' concepts resolved); read here if None.
    """
    from library.dataset.group import build_dataset_group

    templates = resolve_templates(args)
    params = params if params is not None else dataset_params(args)
    concepts = getattr(tokens, "concepts", [tokens])
    group = build_dataset_group(
        params,
        caption_rewrite=tokens.caption_rewriter(),
        templates=templates,
        token_string=tokens.token_string,
        seed=args.seed if args.seed is not None else 0,
        skip_bad_images=args.skip_bad_images,
        prior_loss_weight=args.prior_loss_weight,
        concept_tokens=[c.token_string for c in concepts] if len(concepts) > 1 else None,
    )
    if templates is None and _captions_written_without_token(args, group):
        from library.dataset.templates import a1111_filewords_templates

        templates = group.templates = a1111_filewords_templates()
        logger.warning(
            "--train_data_dir %s is a flat folder whose captions do not hold the token %r (AUTOMATIC1111's habit): "
            "training with the templates 'a photo of a [name], [filewords]' and the like. Give --template_file, "
            "--use_object_template or --use_style_template to choose others", args.train_data_dir, args.token_string,
        )
    val_group = None
    split = args.validation_split or max((d.validation_split for d in params.datasets), default=0.0)
    if split:
        group, val_group = group.split_validation(split, args.validation_seed if args.validation_seed is not None else args.seed or 0)
        if len(val_group) == 0:
            logger.warning("validation split %s leaves no validation batch; validation is off", split)
            val_group = None
    return group, val_group, templates


def _captions_written_without_token(args: argparse.Namespace, group) -> bool:
    """A flat --train_data_dir (AUTOMATIC1111's layout) where no caption holds the token: A1111 adds it by template."""
    from library.dataset.flat_folder import is_flat_folder

    if getattr(args, "dataset_config", None) or getattr(args, "in_json", None) or not getattr(args, "train_data_dir", None):
        return False
    if not is_flat_folder(args.train_data_dir):
        return False
    return not any(contains_token(c, args.token_string) for c in group.iter_captions())


def check_token_in_captions(group, token_string: str, *, templates_used: bool) -> None:
    """Refuse a run where no caption has the token string; warn loudly when some lack it."""
    if templates_used:
        return
    captions = list(group.iter_captions())
    warn_near_misses(captions, token_string)
    missing = [c for c in captions if not contains_token(c, token_string)]
    if not missing:
        return
    if len(missing) == len(captions):
        raise UserError(
            f"none of the {len(captions)} captions contains the token string {token_string!r}, so the new vectors would never be used. "
            f"Add {token_string!r} to your captions (or use caption_prefix = \"{token_string}, \" in the dataset config), "
            "or use --use_object_template / --use_style_template / --template_file"
        )
    examples = "; ".join(repr(c[:60]) for c in missing[:3])
    logger.warning(
        "%d of %d captions do not contain the token string %r; those images teach the vectors nothing (e.g. %s)",
        len(missing), len(captions), token_string, examples,
    )


def check_concepts(group, concepts, *, templates_used: bool) -> None:
    """Several concepts (issue 17): each needs images, and its token in at least one of its own captions.

    One UserError lists every concept that fails, naming its subsets; then each concept gets the one-concept
    warning for captions that lack its token.
    """
    problems = []
    for index, concept in enumerate(concepts):
        images, _ = group.concept_counts(index)
        where = ", ".join(concept.subsets) or "the command line"
        if images == 0:
            problems.append(f"the concept {concept.token_string!r} ({where}) has no training images")
            continue
        if templates_used:
            continue
        captions = list(group.iter_captions(concept=index))
        if not any(contains_token(c, concept.token_string) for c in captions):
            problems.append(
                f"none of the {len(captions)} captions of the concept {concept.token_string!r} ({where}) contains "
                f"{concept.token_string!r}, so its vectors would never be used; add it to those captions (or "
                f"caption_prefix = \"{concept.token_string}, \" in those subsets)"
            )
    if problems:
        raise UserError(problems[0] if len(problems) == 1 else "several concepts cannot train:\n" + "\n".join(f"  - {p}" for p in problems))
    for index, concept in enumerate(concepts):
        captions = list(group.iter_captions(concept=index))
        missing = [c for c in captions if not contains_token(c, concept.token_string)] if not templates_used else []
        if missing:
            logger.warning("%d of %d captions of the concept %r do not contain it; those images teach its vectors nothing (e.g. %r)",
                           len(missing), len(captions), concept.token_string, missing[0][:60])


def warn_near_misses(captions: list[str], token_string: str) -> None:
    """Warn about words that look like the token string but are not it (another case, or inside a longer word)."""
    found = near_misses(captions, token_string)
    if found:
        listing = ", ".join(f"{word!r} x{count}" for word, count in found.most_common(5))
        logger.warning(
            "%d word(s) in the captions resemble the token string %r but are not it (%s): the token matches only as a "
            "whole word with exactly this case, as in sd-scripts, so these words do not train the vectors",
            sum(found.values()), token_string, listing,
        )


def cache_latents(args: argparse.Namespace, group, vae, device: torch.device) -> None:
    group.cache_latents(
        vae,
        vae_batch_size=args.vae_batch_size,
        to_disk=args.cache_latents_to_disk,
        device=device,
        dtype=vae.dtype,
        sampling=args.latent_sampling or "once",  # sd-scripts' cache holds one posterior draw per image
        skip_check=getattr(args, "skip_cache_check", False),
    )


def debug_dataset(args: argparse.Namespace, group, tokenizers) -> None:
    from library.dataset.debug import run_debug_dataset

    out_dir = Path(args.debug_dataset_dir or Path(args.output_dir or ".") / "debug_dataset")
    run_debug_dataset(group, tokenizers, out_dir, args.debug_dataset_count, print)


def training_resolution(group, family) -> tuple[int, int]:
    """(width, height) of the first dataset, for the file's `modelspec.resolution`; the family's default otherwise."""
    for part in group.parts:
        if part.params.resolution:
            return tuple(part.params.resolution)
    return family.default_resolution
