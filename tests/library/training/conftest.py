"""A parser with the trainer's flags, composed as the training scripts compose it."""

from __future__ import annotations

import argparse

import pytest

from library.training.arguments import add_model_arguments, add_textual_inversion_arguments, add_training_arguments


def build_trainer_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train_textual_inversion.py")
    add_model_arguments(parser)
    try:  # dataset flags live in their own module; compose them when it is there
        from library.dataset.arguments import add_dataset_arguments
    except ImportError:
        add_dataset_arguments = None
    if add_dataset_arguments is not None:
        add_dataset_arguments(parser)
    add_training_arguments(parser)
    add_textual_inversion_arguments(parser)
    return parser


@pytest.fixture
def trainer_parser() -> argparse.ArgumentParser:
    return build_trainer_parser()
