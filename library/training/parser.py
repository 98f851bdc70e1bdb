"""The trainer's parser, built in the library so that entry scripts, tools and tests share one definition.

`build_parser(sdxl)` assembles the flag groups (model, textual inversion, dataset, training, compatibility-only,
and SDXL's own); `parse_training_args` parses a command line, reading --config_file as sd-scripts does.
"""

from __future__ import annotations

import argparse

TRAINER_DESCRIPTION = "Textual Inversion for Stable Diffusion 1.x / 2.x: learn new token vectors for a concept from captioned images."
SDXL_DESCRIPTION = "Textual Inversion for SDXL: learns the new token in both text encoders (CLIP-L 768 and OpenCLIP bigG 1280)."


def build_parser(sdxl: bool = False) -> argparse.ArgumentParser:
    """All flags of train_textual_inversion.py (or, with `sdxl`, of sdxl_train_textual_inversion.py)."""
    from library.dataset.arguments import add_dataset_arguments
    from library.training.arguments import (
        add_model_arguments,
        add_sdxl_arguments,
        add_textual_inversion_arguments,
        add_training_arguments,
    )
    from library.training.compat_flags import add_compat_arguments

    parser = argparse.ArgumentParser(
        prog="sdxl_train_textual_inversion.py" if sdxl else "train_textual_inversion.py",
        description=SDXL_DESCRIPTION if sdxl else TRAINER_DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_arguments(parser)
    add_textual_inversion_arguments(parser)
    add_dataset_arguments(parser)
    add_training_arguments(parser)
    if sdxl:
        add_sdxl_arguments(parser)
    add_compat_arguments(parser)
    from library.training.diffusers_example_flags import add_diffusers_example_arguments

    add_diffusers_example_arguments(parser, sdxl)  # the diffusers example's flags, last: ours win a shared name
    return parser


def parse_training_args(argv: list[str] | None = None, *, sdxl: bool = False) -> argparse.Namespace:
    """Parse a trainer command line (default sys.argv[1:]); --config_file fills the flags it leaves out."""
    from library.training.config_file import parse_args_with_config
    from library.training.diffusers_example_flags import apply_diffusers_example_args

    parser = build_parser(sdxl)
    return apply_diffusers_example_args(parse_args_with_config(parser, argv), parser)


def run_training(argv: list[str] | None = None, *, sdxl: bool = False):
    """What the entry scripts do: parse, then train (flag rules are checked inside `train`, before any model loads)."""
    from library.training.loop import train

    return train(parse_training_args(argv, sdxl=sdxl), sdxl=sdxl)
