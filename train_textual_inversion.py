#!/usr/bin/env python
"""Textual Inversion for Stable Diffusion 1.x / 2.x: learn new token vectors for a concept from captioned images.

    accelerate launch train_textual_inversion.py --pretrained_model_name_or_path=model.safetensors \
        --dataset_config=dataset.toml --output_dir=out --output_name=mychar \
        --token_string=mychar4 --init_word=cute --num_vectors_per_token=4 --max_train_steps=1600

Flags, defaults and files follow kohya-ss/sd-scripts; see docs/train_textual_inversion.md.
"""

from __future__ import annotations

import argparse
import sys

from library.cli import run_main


def setup_parser(sdxl: bool = False) -> argparse.ArgumentParser:
    """All flags of the trainer: model, dataset, training (shared with the SDXL script)."""
    from library.dataset.arguments import add_dataset_arguments
    from library.training.arguments import add_model_arguments, add_textual_inversion_arguments, add_training_arguments

    parser = argparse.ArgumentParser(
        prog="sdxl_train_textual_inversion.py" if sdxl else "train_textual_inversion.py",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_arguments(parser)
    add_textual_inversion_arguments(parser)
    add_dataset_arguments(parser)
    add_training_arguments(parser)
    if sdxl:
        from library.training.arguments import add_sdxl_arguments

        add_sdxl_arguments(parser)
    from library.training.diffusers_example_flags import add_diffusers_example_arguments

    add_diffusers_example_arguments(parser, sdxl)  # the diffusers example's flags, last: ours win a shared name
    return parser


def main(argv: list[str] | None = None, sdxl: bool = False) -> None:
    from library.training.arguments import validate_training_args
    from library.training.config_file import parse_args_with_config
    from library.training.loop import train

    from library.training.diffusers_example_flags import apply_diffusers_example_args

    parser = setup_parser(sdxl)
    args = apply_diffusers_example_args(parse_args_with_config(parser, argv), parser)
    validate_training_args(args)
    train(args, sdxl=sdxl)


if __name__ == "__main__":
    sys.exit(run_main(main))
