"""Optimizers by sd-scripts' `--optimizer_type` names, with `--optimizer_args key=value` options.

Names are matched case-insensitively, as sd-scripts does. Packages that only some optimizers need
(bitsandbytes, lion-pytorch, prodigyopt, dadaptation, schedulefree) are imported when asked for, and a missing
one is reported by name with its install command. Any other optimizer class can be named by dotted path
(`torch.optim.RMSprop`, `mypackage.MyOptimizer`); a bare name is looked up in `torch.optim`.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from dataclasses import dataclass
from typing import Any, Iterable

import torch

from library.errors import MissingDependencyError, UserError
from library.optional_deps import require
from library.training.literal_args import parse_kwargs_list
from library.training.learning_rate import LearningRateSchedule
from library.training.optimizer_modes import (  # re-exported: callers ask the optimizer module
    is_adafactor_relative_step,
    is_schedule_free,
    optimizer_eval_mode,
    optimizer_train_mode,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spec:
    name: str  # sd-scripts' spelling
    package: str | None  # optional package to import first (None: torch / transformers, always present)
    module: str
    attr: str
    cuda_only: bool = False  # bitsandbytes' 8-bit and paged optimizers
    nesterov: bool = False  # sd-scripts' SGDNesterov*: nesterov=True, momentum defaults to 0.9


def _bnb(name: str, attr: str | None = None, nesterov: bool = False) -> _Spec:
    return _Spec(name, "bitsandbytes", "bitsandbytes.optim", attr or name, cuda_only=True, nesterov=nesterov)


_SPECS = [
    _Spec("AdamW", None, "torch.optim", "AdamW"),
    _bnb("AdamW8bit"),
    _bnb("PagedAdamW8bit"),
    _bnb("PagedAdamW"),
    _bnb("PagedAdamW32bit"),
    _Spec("Lion", "lion_pytorch", "lion_pytorch", "Lion"),
    _bnb("Lion8bit"),
    _bnb("PagedLion8bit"),
    _Spec("SGDNesterov", None, "torch.optim", "SGD", nesterov=True),
    _bnb("SGDNesterov8bit", "SGD8bit", nesterov=True),
    _Spec("Adafactor", None, "transformers.optimization", "Adafactor"),
    _Spec("Prodigy", "prodigyopt", "prodigyopt", "Prodigy"),
    _Spec("DAdaptation", "dadaptation", "dadaptation.experimental", "DAdaptAdamPreprint"),
    _Spec("DAdaptAdamPreprint", "dadaptation", "dadaptation.experimental", "DAdaptAdamPreprint"),
    _Spec("DAdaptAdaGrad", "dadaptation", "dadaptation", "DAdaptAdaGrad"),
    _Spec("DAdaptAdam", "dadaptation", "dadaptation", "DAdaptAdam"),
    _Spec("DAdaptAdan", "dadaptation", "dadaptation", "DAdaptAdan"),
    _Spec("DAdaptAdanIP", "dadaptation", "dadaptation.experimental", "DAdaptAdanIP"),
    _Spec("DAdaptLion", "dadaptation", "dadaptation", "DAdaptLion"),
    _Spec("DAdaptSGD", "dadaptation", "dadaptation", "DAdaptSGD"),
    _Spec("AdamWScheduleFree", "schedulefree", "schedulefree", "AdamWScheduleFree"),
    _Spec("RAdamScheduleFree", "schedulefree", "schedulefree", "RAdamScheduleFree"),
    _Spec("SGDScheduleFree", "schedulefree", "schedulefree", "SGDScheduleFree"),
]
_BY_LOWER = {spec.name.lower(): spec for spec in _SPECS}

OPTIMIZER_NAMES: tuple[str, ...] = tuple(spec.name for spec in _SPECS)
"""The `--optimizer_type` names known without a dotted path (plus any class of `torch.optim`)."""


def cuda_only_optimizer(name: str) -> bool:
    """Whether `--optimizer_type name` is one of bitsandbytes' 8-bit / paged optimizers (CUDA only)."""
    spec = _BY_LOWER.get(name.strip().lower())
    return bool(spec and spec.cuda_only)


def resolve_optimizer_type(optimizer_type: str | None, *, use_8bit_adam: bool = False, use_lion_optimizer: bool = False) -> str:
    """sd-scripts' old switches `--use_8bit_adam` / `--use_lion_optimizer` mapped onto `--optimizer_type`."""
    given = (optimizer_type or "").strip()
    if use_8bit_adam and use_lion_optimizer:
        raise UserError("--use_8bit_adam and --use_lion_optimizer cannot be used together; use --optimizer_type instead")
    if use_8bit_adam or use_lion_optimizer:
        old_flag, name = ("--use_8bit_adam", "AdamW8bit") if use_8bit_adam else ("--use_lion_optimizer", "Lion")
        if given and given.lower() not in ("adamw", name.lower()):
            raise UserError(f"{old_flag} and --optimizer_type {given} are both given; keep only --optimizer_type")
        return name
    return given or "AdamW"


def build_optimizer(
    optimizer_type: str | None,
    params: Iterable,
    lr: float | LearningRateSchedule,
    optimizer_args: Iterable[str] | None = None,
    *,
    max_grad_norm: float | None = None,
) -> tuple[torch.optim.Optimizer, str]:
    """The optimizer named `optimizer_type` over `params`, and its description for logs and metadata.

    The description is sd-scripts' `ss_optimizer` value: `module.Class(key=value,...)`.
    Schedule-free optimizers come back already in train mode.
    """
    name = (optimizer_type or "AdamW").strip()
    if isinstance(lr, LearningRateSchedule):
        lr = lr.initial_rate  # the piecewise schedule's LambdaLR scales from its first rate
    kwargs = parse_kwargs_list(optimizer_args, "--optimizer_args")
    params = list(params)
    spec = _BY_LOWER.get(name.lower())
    cls = _load_class(spec) if spec else _custom_class(name)
    extra: dict[str, Any] = {}

    if spec and spec.nesterov:
        if "momentum" not in kwargs:
            logger.info(f"{spec.name} needs momentum; using momentum=0.9")
            kwargs["momentum"] = 0.9
        extra["nesterov"] = True
    if spec and spec.name == "Adafactor":
        lr = _prepare_adafactor(kwargs, params, lr, max_grad_norm)
    if spec and (spec.name.startswith("DAdapt") or spec.name == "Prodigy") and lr is not None and lr <= 0.1:
        logger.warning(f"--learning_rate {lr} is low for {spec.name}, which adapts the step size itself; around 1.0 is usual")

    try:
        optimizer = cls(params, lr=lr, **kwargs, **extra)
    except (TypeError, ValueError) as err:
        shown = " ".join(optimizer_args or []) or "(none)"
        raise UserError(f"--optimizer_type {name}: {cls.__name__} rejected the options (--optimizer_args {shown}): {err}") from err

    if is_schedule_free(optimizer):
        optimizer.train()  # schedule-free optimizers start in an undefined mode; training needs train mode
    description = f"{cls.__module__}.{cls.__name__}"
    if kwargs:
        description += "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    logger.info(f"optimizer: {description}")
    return optimizer, description


def _load_class(spec: _Spec):
    needed_for = f"--optimizer_type {spec.name}"
    if spec.cuda_only and not torch.cuda.is_available():
        raise UserError(
            f"{needed_for}: bitsandbytes 8-bit and paged optimizers need a CUDA GPU, and none is available. "
            "Use --optimizer_type AdamW (or Lion, Prodigy, ...) on this machine."
        )
    if spec.package:
        require(spec.package, needed_for)
    module = importlib.import_module(spec.module)
    try:
        return getattr(module, spec.attr)
    except AttributeError as err:
        raise UserError(f"{needed_for}: the installed {spec.package or spec.module} has no {spec.attr}; upgrade it") from err


def _custom_class(name: str):
    if "." in name:
        module_name, _, attr = name.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            top = module_name.split(".")[0]
            if err.name == top:
                raise MissingDependencyError(top, f"--optimizer_type {name}") from err
            raise UserError(f"--optimizer_type {name}: cannot import {module_name}: {err}") from err
        cls = getattr(module, attr, None)
        if cls is None or not callable(cls):
            raise UserError(f"--optimizer_type {name}: module {module_name} has no optimizer class {attr}")
        return cls
    torch_optimizers = {
        n: c
        for n, c in vars(torch.optim).items()
        if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer
    }
    for torch_name, cls in torch_optimizers.items():
        if torch_name.lower() == name.lower():
            return cls
    candidates = {n.lower(): n for n in (*OPTIMIZER_NAMES, *torch_optimizers)}
    close = difflib.get_close_matches(name.lower(), list(candidates), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(candidates[c] for c in close)}?" if close else ""
    raise UserError(
        f"--optimizer_type {name} is not a known optimizer.{hint} "
        f"Known: {', '.join(OPTIMIZER_NAMES)}, any torch.optim class, or a dotted path such as torch.optim.RMSprop."
    )


def _prepare_adafactor(kwargs: dict[str, Any], params: list, lr: float | None, max_grad_norm: float | None) -> float | None:
    """sd-scripts' Adafactor rules: relative_step defaults to True, and then Adafactor sets the step size itself."""
    kwargs.setdefault("relative_step", True)
    if not kwargs["relative_step"] and kwargs.get("warmup_init", False):
        logger.info("Adafactor: warmup_init=True needs relative_step=True; setting relative_step=True")
        kwargs["relative_step"] = True
    if not kwargs["relative_step"]:
        if max_grad_norm:
            logger.warning("Adafactor: --max_grad_norm clips gradients on top of Adafactor's own clipping; consider --max_grad_norm 0")
        if kwargs.get("clip_threshold", 1.0) != 1.0:
            logger.warning("Adafactor: clip_threshold=1.0 usually works best")
        return lr
    # relative_step: Adafactor computes the learning rate; --learning_rate only seeds the reported value
    if lr:
        logger.info(f"Adafactor with relative_step: --learning_rate {lr} is only the initial value reported by the adafactor schedule")
    dropped = [group.pop("lr") for group in params if isinstance(group, dict) and "lr" in group]
    if dropped:
        logger.warning("Adafactor with relative_step ignores per-group learning rates")
    return None


def scale_learning_rate(
    learning_rate: float | LearningRateSchedule,
    gradient_accumulation_steps: int,
    train_batch_size: int,
    num_processes: int = 1,
) -> float | LearningRateSchedule:
    """`--scale_lr`: multiply by accumulation steps x batch size x processes, as the diffusers TI example does."""
    factor = gradient_accumulation_steps * train_batch_size * num_processes
    if isinstance(learning_rate, LearningRateSchedule):
        return learning_rate.scaled(factor)
    return learning_rate * factor
