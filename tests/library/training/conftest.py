"""The trainer's parser, as the training scripts build it."""

from __future__ import annotations

import argparse

import pytest

from library.training.parser import build_parser


def build_trainer_parser() -> argparse.ArgumentParser:
    return build_parser(sdxl=False)


@pytest.fixture
def trainer_parser() -> argparse.ArgumentParser:
    return build_trainer_parser()
