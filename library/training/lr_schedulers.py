"""Learning-rate schedules by sd-scripts' `--lr_scheduler` names, and A1111's piecewise `--learning_rate`.

The named schedules are diffusers' (`diffusers.optimization`) and, for the newer names sd-scripts took from
transformers, transformers'. Every schedule is a `torch.optim.lr_scheduler` object whose step count is the number
of `scheduler.step()` calls, i.e. optimizer steps (accelerate steps a prepared scheduler once per process, which
is why sd-scripts passes `max_train_steps * num_processes` as the total).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
from typing import Any, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from library.errors import UserError
from library.training.learning_rate import LearningRateSchedule, LearningRateSyntaxError, parse_learning_rate
from library.training.literal_args import parse_kwargs_list
from library.training.optimizer_modes import is_adafactor_relative_step, is_schedule_free

logger = logging.getLogger(__name__)

SCHEDULER_NAMES: tuple[str, ...] = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "piecewise_constant",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "warmup_stable_decay",
    "adafactor",
)


def int_or_ratio(text: str | int | float) -> int | float:
    """`--lr_warmup_steps` / `--lr_decay_steps` as sd-scripts reads them: a step count, a ratio < 1, or `N%`."""
    value = str(text).strip()
    try:
        if value.endswith("%"):
            return float(value[:-1]) / 100.0
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a step count, a ratio below 1 or a percentage like 10%") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"'{text}' must not be negative")
    if number == 0:
        return 0
    if number < 1:
        return number
    if not number.is_integer():
        raise argparse.ArgumentTypeError(f"'{text}' is neither a whole number of steps nor a ratio below 1")
    return int(number)


def resolve_steps(value: int | float | None, num_training_steps: int, flag: str) -> int:
    """A step count from an int, or from a ratio (float < 1) of `num_training_steps`, as sd-scripts does."""
    if value is None:
        return 0
    if isinstance(value, float) and value < 1:
        return int(value * num_training_steps)
    if value < 0 or float(value) != int(value):
        raise UserError(f"{flag} must be a whole number of steps or a ratio below 1, got {value}")
    return int(value)


def build_lr_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    num_training_steps: int,
    num_warmup_steps: int | float = 0,
    num_cycles: int = 1,
    power: float = 1.0,
    scheduler_type: str | None = None,
    scheduler_args: Iterable[str] | None = None,
    learning_rate: float | LearningRateSchedule | None = None,
    num_decay_steps: int | float = 0,
    timescale: int | None = None,
    min_lr_ratio: float | None = None,
):
    """The LR scheduler for `--lr_scheduler name` (or `--lr_scheduler_type`), following sd-scripts' rules.

    `learning_rate` is the parsed `--learning_rate`: a `LearningRateSchedule` replaces `name` (the optimizer must
    have been built with `lr=schedule.initial_rate`); for Adafactor with relative_step it is the initial value shown.
    Schedule-free optimizers get a constant schedule, and Adafactor with relative_step its own (as sd-scripts).
    """
    name = (name or "constant").strip()
    kwargs = parse_kwargs_list(scheduler_args, "--lr_scheduler_args")
    warmup = resolve_steps(num_warmup_steps, num_training_steps, "--lr_warmup_steps")
    decay = resolve_steps(num_decay_steps, num_training_steps, "--lr_decay_steps")

    if is_schedule_free(optimizer):
        if name != "constant" or warmup or scheduler_type:
            logger.warning(
                "schedule-free optimizers schedule themselves: --lr_scheduler/--lr_warmup_steps are ignored "
                "(use --optimizer_args warmup_steps=N for warmup)"
            )
        return LambdaLR(optimizer, lambda _: 1.0)

    if isinstance(learning_rate, LearningRateSchedule):
        if scheduler_type or name != "constant" or warmup:
            raise UserError(
                f"--learning_rate '{learning_rate}' is already a schedule; it cannot be combined with "
                f"--lr_scheduler {scheduler_type or name} or --lr_warmup_steps. Use one or the other."
            )
        return _piecewise_scheduler(optimizer, learning_rate)

    if is_adafactor_relative_step(optimizer):
        if name not in ("constant", "adafactor") or scheduler_type:
            logger.warning(f"Adafactor with relative_step sets its own learning rate: --lr_scheduler {scheduler_type or name} is ignored")
        if warmup:
            raise UserError("--lr_warmup_steps cannot be used with Adafactor's relative_step (it warms up itself); set it to 0")
        from transformers.optimization import AdafactorSchedule

        return AdafactorSchedule(optimizer, initial_lr=float(learning_rate or 0.0))
    if name.startswith("adafactor"):
        raise UserError("--lr_scheduler adafactor works only with --optimizer_type Adafactor and relative_step=True")

    if scheduler_type:
        if warmup:
            raise UserError(f"--lr_scheduler_type {scheduler_type} does not use --lr_warmup_steps; set it to 0")
        return _custom_scheduler(scheduler_type, optimizer, kwargs, " ".join(scheduler_args or []))

    return _named_scheduler(name, optimizer, kwargs, num_training_steps, warmup, decay, num_cycles, power, timescale, min_lr_ratio)


def _piecewise_scheduler(optimizer: torch.optim.Optimizer, schedule: LearningRateSchedule) -> LambdaLR:
    lambdas = []
    for group in optimizer.param_groups:
        base = group["lr"]
        if not base:
            raise ValueError("build the optimizer with lr=schedule.initial_rate (> 0) for a piecewise --learning_rate")
        lambdas.append(lambda step, base=base: schedule.rate_at(step) / base)
    return LambdaLR(optimizer, lambdas)


def _custom_scheduler(scheduler_type: str, optimizer, kwargs: dict[str, Any], shown_args: str):
    module_name, _, attr = scheduler_type.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else torch.optim.lr_scheduler
    except ImportError as err:
        raise UserError(f"--lr_scheduler_type {scheduler_type}: cannot import {module_name}: {err}") from err
    cls = getattr(module, attr, None)
    if cls is None or not callable(cls):
        raise UserError(f"--lr_scheduler_type {scheduler_type}: {module.__name__} has no scheduler class {attr}")
    try:
        return cls(optimizer, **kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"--lr_scheduler_type {scheduler_type} rejected --lr_scheduler_args {shown_args or '(none)'}: {err}") from err


def _named_scheduler(name, optimizer, kwargs, total, warmup, decay, num_cycles, power, timescale, min_lr_ratio):
    from diffusers import optimization as dif
    from transformers import optimization as tra

    if name == "constant":
        if warmup:
            raise UserError("--lr_scheduler constant does not use --lr_warmup_steps; use constant_with_warmup or set it to 0")
        builder, args = dif.get_constant_schedule, {}
    elif name == "constant_with_warmup":
        builder, args = dif.get_constant_schedule_with_warmup, {"num_warmup_steps": warmup}
    elif name == "linear":
        builder, args = dif.get_linear_schedule_with_warmup, {"num_warmup_steps": warmup, "num_training_steps": total}
    elif name == "cosine":
        builder, args = dif.get_cosine_schedule_with_warmup, {"num_warmup_steps": warmup, "num_training_steps": total}
    elif name == "cosine_with_restarts":
        builder = dif.get_cosine_with_hard_restarts_schedule_with_warmup
        args = {"num_warmup_steps": warmup, "num_training_steps": total, "num_cycles": num_cycles}
    elif name == "polynomial":
        builder = dif.get_polynomial_decay_schedule_with_warmup
        args = {"num_warmup_steps": warmup, "num_training_steps": total, "power": power}
    elif name == "piecewise_constant":
        if "step_rules" not in kwargs:
            raise UserError('--lr_scheduler piecewise_constant needs --lr_scheduler_args "step_rules=\'1:10,0.1:20,0.01\'"')
        builder, args = dif.get_piecewise_constant_schedule, {}
    elif name == "inverse_sqrt":
        builder, args = tra.get_inverse_sqrt_schedule, {"num_warmup_steps": warmup, "timescale": timescale}
    elif name == "cosine_with_min_lr":
        if min_lr_ratio is None:
            raise UserError("--lr_scheduler cosine_with_min_lr needs --lr_scheduler_min_lr_ratio (e.g. 0.1)")
        builder = tra.get_cosine_with_min_lr_schedule_with_warmup
        args = {"num_warmup_steps": warmup, "num_training_steps": total, "num_cycles": num_cycles / 2, "min_lr_rate": min_lr_ratio}
    elif name == "warmup_stable_decay":
        builder = tra.get_wsd_schedule
        args = {
            "num_warmup_steps": warmup,
            "num_stable_steps": total - warmup - decay,
            "num_decay_steps": decay,
            "num_cycles": num_cycles / 2,
            "min_lr_ratio": min_lr_ratio or 0.0,
        }
    else:
        close = difflib.get_close_matches(name, SCHEDULER_NAMES, n=2, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise UserError(
            f"--lr_scheduler {name} is not known.{hint} Known: {', '.join(SCHEDULER_NAMES)}; "
            "or name any scheduler class with --lr_scheduler_type (e.g. torch.optim.lr_scheduler.StepLR)."
        )
    try:
        return builder(optimizer, **args, **kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"--lr_scheduler {name}: {err}") from err
