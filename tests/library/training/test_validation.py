"""When validation runs: sd-scripts' schedule, written down as data."""

from __future__ import annotations

import argparse

import pytest

from library.training.validation import epoch_validation_due, step_validation_due

# kohya-ss/sd-scripts train_network.py (validation added in v0.9.0, 2025): at an epoch's end
# `(epoch + 1) % validate_every_n_epochs == 0 if validate_every_n_epochs is not None else True`; after a step
# `validate_every_n_steps is not None and global_step % validate_every_n_steps == 0`.
SD_SCRIPTS_EPOCH_SCHEDULE = [  # (validate_every_n_epochs, completed epochs that validate among 1..6)
    (None, [1, 2, 3, 4, 5, 6]),
    (1, [1, 2, 3, 4, 5, 6]),
    (2, [2, 4, 6]),
    (4, [4]),
]
SD_SCRIPTS_STEP_SCHEDULE = [  # (validate_every_n_steps, steps that validate among 1..6)
    (None, []),
    (2, [2, 4, 6]),
    (5, [5]),
]


@pytest.mark.parametrize(("every", "expected"), SD_SCRIPTS_EPOCH_SCHEDULE)
def test_epoch_schedule_matches_sd_scripts(every, expected):
    args = argparse.Namespace(validate_every_n_epochs=every)
    assert [e for e in range(1, 7) if epoch_validation_due(args, e)] == expected


@pytest.mark.parametrize(("every", "expected"), SD_SCRIPTS_STEP_SCHEDULE)
def test_step_schedule_matches_sd_scripts(every, expected):
    args = argparse.Namespace(validate_every_n_steps=every)
    assert [s for s in range(1, 7) if step_validation_due(args, s)] == expected
