"""Specification of --optimizer_type / --optimizer_args: every optimizer builds and steps, or says what is missing."""

from __future__ import annotations

import importlib.util
import logging
import sys

import pytest
import torch

from library.errors import MissingDependencyError, UserError
from library.optional_deps import require
from library.training.literal_args import parse_kwargs_list
from library.training.lr_schedulers import parse_learning_rate
from library.training.optimizers import (
    _BY_LOWER,
    OPTIMIZER_NAMES,
    build_optimizer,
    is_adafactor_relative_step,
    is_schedule_free,
    optimizer_eval_mode,
    optimizer_train_mode,
    resolve_optimizer_type,
    scale_learning_rate,
)

PLAIN = [n for n in OPTIMIZER_NAMES if not _BY_LOWER[n.lower()].cuda_only]
BITSANDBYTES = [n for n in OPTIMIZER_NAMES if _BY_LOWER[n.lower()].cuda_only]


def _param(device: str = "cpu") -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.linspace(-1, 1, 32, device=device).reshape(4, 8))


def _step(optimizer, param) -> None:
    optimizer.zero_grad()
    (param**2).sum().backward()
    optimizer.step()


def _lr_for(name: str) -> float:
    return 1.0 if name.startswith("DAdapt") or name == "Prodigy" else 1e-2


@pytest.mark.parametrize("name", PLAIN)
def test_each_optimizer_builds_and_steps(name):
    spec = _BY_LOWER[name.lower()]
    if spec.package:
        pytest.importorskip(spec.package, reason=f"{spec.package} is not installed (pip install -e .[optimizers])")
    param = _param()
    before = param.detach().clone()
    optimizer, description = build_optimizer(name.upper(), [param], _lr_for(name), [])  # names are case-insensitive
    for _ in range(8):  # RAdam variants make no update in their first few steps
        _step(optimizer, param)
    assert torch.isfinite(param).all()
    assert not torch.equal(param.detach(), before), f"{name} did not change the parameter"
    assert description.startswith(f"{type(optimizer).__module__}.{type(optimizer).__name__}")


@pytest.mark.parametrize("name", BITSANDBYTES)
def test_bitsandbytes_optimizers_need_cuda_and_the_package(name):
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA GPU"):
            build_optimizer(name, [_param()], 1e-3)
        return
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(MissingDependencyError, match="bitsandbytes"):
            build_optimizer(name, [_param("cuda")], 1e-3)
        return
    param = _param("cuda")
    optimizer, _ = build_optimizer(name, [param], 1e-3)
    _step(optimizer, param)
    assert torch.isfinite(param).all()


def test_a_missing_package_is_named_with_its_install_command(monkeypatch):
    with pytest.raises(MissingDependencyError, match="definitely_not_installed_pkg"):
        require("definitely_not_installed_pkg", "--optimizer_type X")
    # the real path for a known optional optimizer, with its module made unimportable
    monkeypatch.setitem(sys.modules, "lion_pytorch", None)
    with pytest.raises(MissingDependencyError) as err:
        build_optimizer("Lion", [_param()], 1e-4)
    assert err.value.package == "lion-pytorch"
    assert "pip install lion-pytorch" in str(err.value) and "--optimizer_type Lion" in str(err.value)


def test_a_dotted_path_to_a_missing_package_says_so():
    with pytest.raises(MissingDependencyError, match="definitely_not_installed_pkg"):
        build_optimizer("definitely_not_installed_pkg.MyOptimizer", [_param()], 1e-3)


@pytest.mark.parametrize("name", ["torch.optim.RMSprop", "RMSprop", "rmsprop"])
def test_any_torch_optimizer_by_path_or_name(name):
    optimizer, description = build_optimizer(name, [_param()], 1e-3, ["alpha=0.9"])
    assert isinstance(optimizer, torch.optim.RMSprop)
    assert optimizer.defaults["alpha"] == 0.9
    assert description == "torch.optim.rmsprop.RMSprop(alpha=0.9)"


def test_unknown_names_list_the_valid_ones_with_a_suggestion():
    with pytest.raises(UserError) as err:
        build_optimizer("AdamW9bit", [_param()], 1e-3)
    message = str(err.value)
    assert "Did you mean AdamW8bit" in message and "Prodigy" in message and "torch.optim.RMSprop" in message
    with pytest.raises(UserError, match="has no optimizer class NoSuchOptimizer"):
        build_optimizer("torch.optim.NoSuchOptimizer", [_param()], 1e-3)


def test_optimizer_args_are_python_literals_as_in_real_configs():
    # from ../shared/realworld/train_configs/002 and 007
    assert parse_kwargs_list(["weight_decay=0.1", "betas=0.9,0.99"], "--optimizer_args") == {"weight_decay": 0.1, "betas": (0.9, 0.99)}
    assert parse_kwargs_list(["betas=[0.9,0.99]"], "--optimizer_args") == {"betas": [0.9, 0.99]}
    parsed = parse_kwargs_list(["decouple=True", "use_bias_correction=true", "d_coef=2.0", "foreach=None", "name=adam"], "x")
    assert parsed == {"decouple": True, "use_bias_correction": True, "d_coef": 2.0, "foreach": None, "name": "adam"}
    with pytest.raises(UserError, match="--optimizer_args: 'weight_decay' is not of the form key=value"):
        parse_kwargs_list(["weight_decay"], "--optimizer_args")


def test_options_reach_the_optimizer_and_the_description():
    optimizer, description = build_optimizer("AdamW", [_param()], 1e-3, ["weight_decay=0.1", "betas=0.9,0.99"])
    assert optimizer.defaults["weight_decay"] == 0.1 and tuple(optimizer.defaults["betas"]) == (0.9, 0.99)
    assert description == "torch.optim.adamw.AdamW(weight_decay=0.1,betas=(0.9, 0.99))"


def test_options_the_optimizer_rejects_are_a_user_error():
    with pytest.raises(UserError, match=r"--optimizer_type AdamW: AdamW rejected the options \(--optimizer_args no_such=1\)"):
        build_optimizer("AdamW", [_param()], 1e-3, ["no_such=1"])
    with pytest.raises(UserError, match="beta"):
        build_optimizer("AdamW", [_param()], 1e-3, ["betas=1.5,0.9"])


def test_sgd_nesterov_defaults_momentum_as_sd_scripts():
    optimizer, _ = build_optimizer("SGDNesterov", [_param()], 1e-3)
    assert optimizer.defaults["nesterov"] is True and optimizer.defaults["momentum"] == 0.9


def test_adafactor_follows_sd_scripts_relative_step_rules(caplog):
    optimizer, _ = build_optimizer("Adafactor", [_param()], 1e-3)
    assert optimizer.defaults["relative_step"] is True and optimizer.defaults["lr"] is None
    assert is_adafactor_relative_step(optimizer)
    optimizer, _ = build_optimizer("Adafactor", [_param()], 1e-3, ["relative_step=False", "warmup_init=True"])
    assert optimizer.defaults["relative_step"] is True  # warmup_init forces relative_step
    with caplog.at_level(logging.WARNING):
        optimizer, _ = build_optimizer("Adafactor", [_param()], 1e-3, ["relative_step=False", "scale_parameter=False"], max_grad_norm=1.0)
    assert optimizer.defaults["lr"] == 1e-3 and not is_adafactor_relative_step(optimizer)
    assert "max_grad_norm" in caplog.text


def test_schedule_free_optimizers_switch_modes_and_others_ignore_it():
    pytest.importorskip("schedulefree", reason="schedulefree is not installed (pip install schedulefree)")
    param = _param()
    optimizer, _ = build_optimizer("AdamWScheduleFree", [param], 1e-2)
    assert is_schedule_free(optimizer) and optimizer.param_groups[0]["train_mode"] is True
    _step(optimizer, param)
    optimizer_eval_mode(optimizer)
    assert optimizer.param_groups[0]["train_mode"] is False
    optimizer_train_mode(optimizer)
    assert optimizer.param_groups[0]["train_mode"] is True

    adamw, _ = build_optimizer("AdamW", [_param()], 1e-3)
    assert not is_schedule_free(adamw)
    optimizer_eval_mode(adamw)  # no-op
    optimizer_train_mode(adamw)


def test_parameter_groups_are_accepted():
    a, b = _param(), _param()
    optimizer, _ = build_optimizer("AdamW", [{"params": [a]}, {"params": [b], "lr": 1e-4}], 1e-3)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-4]


def test_old_switches_map_to_optimizer_types():
    assert resolve_optimizer_type(None) == "AdamW"
    assert resolve_optimizer_type("", use_8bit_adam=True) == "AdamW8bit"
    assert resolve_optimizer_type("AdamW", use_lion_optimizer=True) == "Lion"
    with pytest.raises(UserError, match="--use_8bit_adam and --optimizer_type Prodigy"):
        resolve_optimizer_type("Prodigy", use_8bit_adam=True)


def test_scale_lr_multiplies_accumulation_batch_and_processes():
    assert scale_learning_rate(1e-4, gradient_accumulation_steps=2, train_batch_size=4, num_processes=2) == pytest.approx(1.6e-3)
    schedule = scale_learning_rate(parse_learning_rate("0.01:10, 0.001"), gradient_accumulation_steps=2, train_batch_size=1)
    assert schedule.pieces == ((0.02, 10), (0.002, None))
