"""Fixtures of the embedding tests; file builders are in embedding_files.py."""

import pytest
import torch


@pytest.fixture
def vectors() -> torch.Tensor:
    """Three 32-wide vectors: the width of the tiny SD1 model's text encoder."""
    return torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
