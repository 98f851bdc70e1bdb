"""sd-scripts' sampler names -> diffusers schedulers built from the model's own scheduler config.

Building `from_config` keeps the model's beta schedule and prediction type (epsilon or v_prediction), so a
v-parameterised SD 2.x model samples correctly with every sampler.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from library.errors import UserError
from library.optional_deps import require

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

# name -> (diffusers scheduler class, config overrides, A1111's name for the PNG `parameters` text).
# Class names, not classes, so that parsing prompt files does not import diffusers.
SAMPLERS: dict[str, tuple[str, dict, str]] = {
    "ddim": ("DDIMScheduler", {}, "DDIM"),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}, "PLMS"),
    "lms": ("LMSDiscreteScheduler", {}, "LMS"),
    "euler": ("EulerDiscreteScheduler", {}, "Euler"),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}, "Euler a"),
    "heun": ("HeunDiscreteScheduler", {}, "Heun"),
    "dpm_2": ("KDPM2DiscreteScheduler", {}, "DPM2"),
    "dpm_2_a": ("KDPM2AncestralDiscreteScheduler", {}, "DPM2 a"),
    # plain DPM-Solver cannot end at sigma 0 (diffusers refuses final_sigmas_type "zero" for it)
    "dpmsolver": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}, "DPM-Solver"),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}, "DPM++ 2M"),
    # lower_order_final: what diffusers would switch to itself (with a warning) when ending at sigma 0
    "dpmsingle": ("DPMSolverSinglestepScheduler", {"lower_order_final": True}, "DPM++ 2S"),
}
ALIASES = {"k_lms": "lms", "k_euler": "euler", "k_euler_a": "euler_a", "k_dpm_2": "dpm_2", "k_dpm_2_a": "dpm_2_a"}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS) + tuple(ALIASES)


def canonical_sampler(name: str) -> str:
    """`k_euler_a` -> `euler_a`; raises UserError listing the valid names for an unknown one."""
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; valid samplers are {', '.join(SAMPLER_NAMES)}")
    return key


def check_sampler(name: str) -> str:
    """canonical_sampler(), and a clear error now if the sampler needs a package that is missing."""
    key = canonical_sampler(name)
    if key == "lms":
        require("scipy", f"the {name} sampler")  # diffusers' LMS integrates its coefficients with scipy
    return key


def a1111_sampler_name(name: str) -> str:
    """The name AUTOMATIC1111 shows for this sampler (what other tools read from PNG metadata)."""
    return SAMPLERS[canonical_sampler(name)][2]


# samplers whose diffusers scheduler can rescale its betas to zero terminal SNR (`rescale_betas_zero_snr`)
ZERO_TERMINAL_SNR_SAMPLERS = ("ddim", "euler", "euler_a", "dpmsolver", "dpmsolver++")


def check_zero_terminal_snr(name: str, where: str = "--sampler") -> None:
    """--zero_terminal_snr works only with samplers whose diffusers scheduler rescales its betas."""
    if canonical_sampler(name) not in ZERO_TERMINAL_SNR_SAMPLERS:
        raise UserError(f"--zero_terminal_snr does not work with {where} {name}: its diffusers scheduler cannot rescale "
                        f"the betas; use one of {', '.join(ZERO_TERMINAL_SNR_SAMPLERS)}")


def make_sample_scheduler(name: str, base_config, prediction_type: str | None = None, *, zero_terminal_snr: bool = False,
                          scheduler_class: type | None = None) -> "SchedulerMixin":
    """A fresh scheduler for sampler `name`, configured from the model's scheduler config.

    `base_config` is a scheduler, its `.config`, or a dict; `prediction_type` overrides the config's.
    `zero_terminal_snr` rescales the betas so the last timestep is pure noise (sd-scripts' --zero_terminal_snr);
    `scheduler_class` replaces the sampler's class by a subclass (Gradual Latent's Euler a).
    """
    import diffusers

    class_name, overrides, _ = SAMPLERS[check_sampler(name)]
    config = dict(getattr(base_config, "config", base_config))
    config.update(overrides)
    if prediction_type is not None:
        config["prediction_type"] = prediction_type
    if zero_terminal_snr:
        check_zero_terminal_snr(name)
        config["rescale_betas_zero_snr"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # diffusers deprecates algorithm_type "dpmsolver"
        return (scheduler_class or getattr(diffusers, class_name)).from_config(config)
