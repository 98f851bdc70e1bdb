"""Specification of --lr_scheduler and friends: each schedule's LR at chosen steps, and A1111's piecewise rates."""

from __future__ import annotations

import argparse
import logging
import math

import pytest
import torch

from library.errors import UserError
from library.training.lr_schedulers import (
    LearningRateSchedule,
    LearningRateSyntaxError,
    build_lr_scheduler,
    int_or_ratio,
    parse_learning_rate,
    resolve_steps,
)
from library.training.optimizers import build_optimizer

BASE = 1e-3
TOTAL = 100


def _optimizer(lr: float = BASE, name: str = "AdamW", args=None):
    optimizer, _ = build_optimizer(name, [torch.nn.Parameter(torch.zeros(2))], lr, args)
    return optimizer


def _lrs(scheduler, steps):
    """LR used by each optimizer step in `steps` (0-based): the LR after that many scheduler.step() calls."""
    out, done = {}, 0
    for step in sorted(steps):
        while done < step:
            scheduler.optimizer.step()
            scheduler.step()
            done += 1
        out[step] = scheduler.get_last_lr()[0]
    return [out[s] for s in steps]


def _build(name, **kw):
    optimizer = _optimizer(kw.pop("lr", BASE))
    return build_lr_scheduler(name, optimizer, num_training_steps=kw.pop("total", TOTAL), **kw)


def test_constant():
    assert _lrs(_build("constant"), [0, 50, 99]) == pytest.approx([BASE] * 3)


def test_constant_with_warmup():
    assert _lrs(_build("constant_with_warmup", num_warmup_steps=10), [0, 5, 10, 90]) == pytest.approx([0, BASE * 0.5, BASE, BASE])


def test_linear():
    expected = [BASE * s / 10 if s < 10 else BASE * (TOTAL - s) / (TOTAL - 10) for s in (0, 5, 10, 55, 100)]
    assert _lrs(_build("linear", num_warmup_steps=10), [0, 5, 10, 55, 100]) == pytest.approx(expected)


def test_cosine():
    steps = [10, 32, 55, 100]
    expected = [BASE * 0.5 * (1 + math.cos(math.pi * (s - 10) / 90)) for s in steps]
    assert _lrs(_build("cosine", num_warmup_steps=10), steps) == pytest.approx(expected, abs=1e-12)


def test_cosine_with_restarts():
    steps = [0, 25, 49, 50, 75]
    expected = [BASE * 0.5 * (1 + math.cos(math.pi * ((2 * s / TOTAL) % 1))) for s in steps]
    assert _lrs(_build("cosine_with_restarts", num_cycles=2), steps) == pytest.approx(expected, abs=1e-12)


def test_polynomial():
    lr_end, power = 1e-7, 2.0
    steps = [0, 30, 60, 100]
    expected = [(BASE - lr_end) * (1 - s / TOTAL) ** power + lr_end for s in steps]
    assert _lrs(_build("polynomial", power=power), steps) == pytest.approx(expected)


def test_piecewise_constant_takes_its_rules_from_scheduler_args():
    scheduler = _build("piecewise_constant", scheduler_args=["step_rules='1:10,0.1:20,0.01'"])
    assert _lrs(scheduler, [0, 9, 10, 19, 20, 50]) == pytest.approx([BASE, BASE, BASE * 0.1, BASE * 0.1, BASE * 0.01, BASE * 0.01])
    with pytest.raises(UserError, match="step_rules"):
        _build("piecewise_constant")


def test_inverse_sqrt():
    # timescale defaults to the warmup: 1/sqrt(step / warmup) after the warmup
    scheduler = _build("inverse_sqrt", num_warmup_steps=10)
    assert _lrs(scheduler, [5, 10, 40]) == pytest.approx([BASE * 0.5, BASE, BASE * 0.5])
    scheduler = _build("inverse_sqrt", num_warmup_steps=10, timescale=20)
    assert _lrs(scheduler, [10, 30, 70]) == pytest.approx([BASE, BASE / math.sqrt(2), BASE / 2])


def test_cosine_with_min_lr():
    scheduler = _build("cosine_with_min_lr", min_lr_ratio=0.1)
    assert _lrs(scheduler, [0, 50, 100]) == pytest.approx([BASE, BASE * 0.55, BASE * 0.1])
    with pytest.raises(UserError, match="--lr_scheduler_min_lr_ratio"):
        _build("cosine_with_min_lr")


def test_warmup_stable_decay():
    scheduler = _build("warmup_stable_decay", num_warmup_steps=10, num_decay_steps=0.2)
    assert _lrs(scheduler, [5, 10, 79, 80, 90]) == pytest.approx([BASE * 0.5, BASE, BASE, BASE, BASE * 0.5])


def test_warmup_as_a_ratio_of_the_training_steps():
    assert resolve_steps(0.1, 200, "--lr_warmup_steps") == 20
    assert _lrs(_build("constant_with_warmup", num_warmup_steps=0.1), [0, 5, 10]) == pytest.approx([0, BASE * 0.5, BASE])


@pytest.mark.parametrize(("text", "value"), [("100", 100), ("0", 0), ("0.05", 0.05), ("5%", 0.05), ("2.0", 2)])
def test_warmup_flag_values(text, value):
    assert int_or_ratio(text) == pytest.approx(value) and type(int_or_ratio(text)) is type(value)


@pytest.mark.parametrize("text", ["1.5", "-1", "ten"])
def test_bad_warmup_flag_values(text):
    with pytest.raises(argparse.ArgumentTypeError):
        int_or_ratio(text)


def test_warmup_that_the_schedule_does_not_use_is_an_error_as_in_sd_scripts():
    with pytest.raises(UserError, match="constant does not use --lr_warmup_steps"):
        _build("constant", num_warmup_steps=5)
    with pytest.raises(UserError, match="--lr_scheduler_type torch.optim.lr_scheduler.StepLR does not use"):
        _build("constant", scheduler_type="torch.optim.lr_scheduler.StepLR", scheduler_args=["step_size=10"], num_warmup_steps=5)


def test_any_scheduler_class_with_its_args():
    scheduler = _build("constant", scheduler_type="StepLR", scheduler_args=["step_size=10", "gamma=0.5"])
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    assert _lrs(scheduler, [0, 10, 20]) == pytest.approx([BASE, BASE * 0.5, BASE * 0.25])
    with pytest.raises(UserError, match="--lr_scheduler_args step_size=10 no_such=1"):
        _build("constant", scheduler_type="torch.optim.lr_scheduler.StepLR", scheduler_args=["step_size=10", "no_such=1"])


def test_unknown_scheduler_names_suggest_a_known_one():
    with pytest.raises(UserError, match="Did you mean cosine_with_restarts"):
        _build("cosine_with_restart")


def test_adafactor_relative_step_gets_the_adafactor_schedule(caplog):
    optimizer = _optimizer(1e-3, "Adafactor")
    with caplog.at_level(logging.WARNING):
        scheduler = build_lr_scheduler("cosine", optimizer, num_training_steps=TOTAL, learning_rate=1e-3)
    assert type(scheduler).__name__ == "AdafactorSchedule" and "ignored" in caplog.text
    assert scheduler.get_last_lr() == [1e-3]
    with pytest.raises(UserError, match="only with --optimizer_type Adafactor"):
        _build("adafactor")


def test_schedule_free_optimizers_get_a_constant_schedule(caplog):
    pytest.importorskip("schedulefree", reason="schedulefree is not installed")
    optimizer = _optimizer(1e-3, "AdamWScheduleFree")
    with caplog.at_level(logging.WARNING):
        scheduler = build_lr_scheduler("cosine", optimizer, num_training_steps=TOTAL, num_warmup_steps=10)
    assert "schedule-free" in caplog.text
    assert _lrs(scheduler, [0, 50]) == pytest.approx([1e-3, 1e-3])


# ---- A1111 piecewise learning rate --------------------------------------------------------------------


def test_plain_numbers_stay_numbers():
    assert parse_learning_rate("5e-4") == 5e-4
    assert parse_learning_rate(0.0005) == 0.0005
    assert parse_learning_rate(" 1.0 ") == 1.0


def test_a1111_schedule_syntax():
    schedule = parse_learning_rate("0.005:100, 1e-3:1000, 1e-5")
    assert schedule == LearningRateSchedule(((0.005, 100), (1e-3, 1000), (1e-5, None)))
    assert [schedule.rate_at(s) for s in (0, 99, 100, 999, 1000, 5000)] == [0.005, 0.005, 1e-3, 1e-3, 1e-5, 1e-5]
    assert str(schedule) == "0.005:100, 0.001:1000, 1e-05" and parse_learning_rate(str(schedule)) == schedule
    assert parse_learning_rate("0.01:50, 0.001:-1").pieces == ((0.01, 50), (0.001, None))
    bounded = parse_learning_rate("0.005:100, 1e-3:1000,")
    assert bounded.end_step == 1000 and bounded.rate_at(2000) == 1e-3


def test_the_schedule_drives_a_lambda_lr():
    schedule = parse_learning_rate("0.005:100, 1e-3:1000, 1e-5")
    optimizer = _optimizer(schedule)  # built at the schedule's first rate
    assert optimizer.param_groups[0]["lr"] == 0.005
    scheduler = build_lr_scheduler("constant", optimizer, num_training_steps=2000, learning_rate=schedule)
    assert _lrs(scheduler, [0, 99, 100, 999, 1000, 1500]) == pytest.approx([0.005, 0.005, 1e-3, 1e-3, 1e-5, 1e-5])


def test_a_schedule_does_not_combine_with_another_scheduler():
    schedule = parse_learning_rate("0.005:100, 1e-5")
    with pytest.raises(UserError, match="cannot be combined with --lr_scheduler cosine"):
        build_lr_scheduler("cosine", _optimizer(0.005), num_training_steps=TOTAL, learning_rate=schedule)


@pytest.mark.parametrize(
    ("text", "piece"),
    [
        ("0.005:abc, 1e-5", "'0.005:abc'"),
        ("abc:100, 1e-5", "'abc:100'"),
        ("0.005:100, 1e-3:50", "'1e-3:50'"),
        ("1e-5, 0.005:100", "'1e-5' runs to the end"),
        ("-0.1:10, 1e-5", "'-0.1:10'"),
        ("0.005:0, 1e-5", "'0.005:0'"),
        ("0.005:100,, 1e-5", "empty piece"),
        ("fast", "'fast'"),
    ],
)
def test_schedule_errors_name_the_flag_and_the_bad_piece(text, piece):
    with pytest.raises(LearningRateSyntaxError) as err:
        parse_learning_rate(text)
    assert "--learning_rate" in str(err.value) and piece in str(err.value)
    assert isinstance(err.value, UserError) and isinstance(err.value, argparse.ArgumentTypeError)


def test_parsing_is_idempotent_for_already_parsed_values():
    schedule = parse_learning_rate("0.005:100, 1e-5")
    assert parse_learning_rate(schedule) is schedule and schedule.initial_rate == 0.005
