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
    """sd-scripts' name for the parser; it is built in `library.training.parser`."""
    from library.training.parser import build_parser

    return build_parser(sdxl)


def main(argv: list[str] | None = None, sdxl: bool = False) -> None:
    from library.training.parser import run_training

    run_training(argv, sdxl=sdxl)


if __name__ == "__main__":
    sys.exit(run_main(main))
