#!/usr/bin/env python
"""Textual Inversion for SDXL: learns the new token in both text encoders (CLIP-L 768 and OpenCLIP bigG 1280).

Same flags and training loop as train_textual_inversion.py; the SDXL model-family adapter adds the pooled
text embedding and size/crop conditioning. See docs/sdxl_train_textual_inversion.md.
"""

from __future__ import annotations

import argparse
import sys

from library.cli import run_main


def setup_parser(sdxl: bool = True) -> argparse.ArgumentParser:
    """sd-scripts' name for the parser; it is built in `library.training.parser`."""
    from library.training.parser import build_parser

    return build_parser(sdxl)


def main(argv: list[str] | None = None) -> None:
    from library.training.parser import run_training

    run_training(argv, sdxl=True)


if __name__ == "__main__":
    sys.exit(run_main(main))
