"""The one owner of the trainer's cross-flag rules: which flags need, exclude or cancel each other.

`check_training_flags(args, sdxl=...)` runs once, before any model is loaded. It collects every problem with the
flags (and with the dataset they describe) and raises one `FlagError` that lists them all, as the dataset config
does, so a user fixes a command line in one go. Flags whose effect another flag cancels are warned about here,
naming both. Lower layers keep asserts for programming errors only; a rule a user can break belongs here.
"""

from __future__ import annotations

import argparse
import logging
from typing import Callable

import torch

from library.errors import MissingDependencyError, UserError

logger = logging.getLogger(__name__)

Rule = Callable[[argparse.Namespace, bool, "Problems"], None]


class FlagError(UserError):
    """Every problem found in the flags, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems with the flags:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class Problems:
    """An ordered set of problem lines (a rule reached twice is reported once)."""

    def __init__(self) -> None:
        self._lines: dict[str, None] = {}

    def add(self, line: str) -> None:
        self._lines.setdefault(line, None)

    def lines(self) -> list[str]:
        return list(self._lines)


def _on(args: argparse.Namespace, dest: str) -> bool:
    return bool(getattr(args, dest, None))


# --- rules ------------------------------------------------------------------------------------------------------


def _required_and_counts(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    if not (getattr(args, "token_string", None) or "").strip() and not _on(args, "dataset_config"):
        # with a dataset config every subset may name its own token_string: _dataset_problems checks that case
        problems.add("--token_string is required: the word that stands for your concept in captions, e.g. 'mychar4'")
    for flag in ("max_train_steps", "gradient_accumulation_steps", "num_vectors_per_token", "validate_every_n_steps",
                 "validate_every_n_epochs", "max_validation_steps"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            problems.add(f"--{flag} must be at least 1, got {value}")
    if getattr(args, "max_token_length", None) not in (None, 75, 150, 225):
        problems.add(f"--max_token_length must be 75, 150 or 225 (got {args.max_token_length})")
    templates = [f for f in ("use_object_template", "use_style_template", "template_file") if _on(args, f)]
    if len(templates) > 1:
        problems.add(f"{' and '.join('--' + t for t in templates)} cannot be used together; choose one template source")


def _precision(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    if _on(args, "full_fp16") and _on(args, "full_bf16"):
        problems.add("--full_fp16 and --full_bf16 cannot be used together")
    for flag, wanted in (("full_fp16", "fp16"), ("full_bf16", "bf16")):
        if _on(args, flag) and args.mixed_precision != wanted:
            problems.add(f"--{flag} needs --mixed_precision {wanted}")


def _machine(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    """Flags this machine cannot honour: refused now rather than after minutes of loading."""
    cuda = torch.cuda.is_available()
    _gpu_optimizer(args, cuda, problems)
    if _on(args, "xformers"):
        if not cuda:
            problems.add("--xformers needs a CUDA GPU; leave it out to use PyTorch's scaled-dot-product attention (--sdpa, the default)")
        else:
            _require(problems, "xformers", "--xformers")


def _gpu_optimizer(args: argparse.Namespace, cuda: bool, problems: Problems) -> None:
    """bitsandbytes' 8-bit and paged optimizers (also --use_8bit_adam) need CUDA and the package: said before loading."""
    from library.training.optimizers import cuda_only_optimizer, resolve_optimizer_type

    try:
        name = resolve_optimizer_type(getattr(args, "optimizer_type", None), use_8bit_adam=_on(args, "use_8bit_adam"),
                                      use_lion_optimizer=_on(args, "use_lion_optimizer"))
    except UserError as err:
        problems.add(str(err))
        return
    if not cuda_only_optimizer(name):
        return
    flag = "--use_8bit_adam" if _on(args, "use_8bit_adam") else f"--optimizer_type {name}"
    if not cuda:
        problems.add(f"{flag}: bitsandbytes 8-bit and paged optimizers need a CUDA GPU, and none is available; "
                     "use --optimizer_type AdamW (or Lion, Prodigy, ...) on this machine")
    else:
        _require(problems, "bitsandbytes", flag)


def _slow_bf16(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    """bf16 on a CPU without bf16 instructions is emulated: allowed, but the user is told before hours go by."""
    from library.hardware import cpu_has_native_bf16

    on_cpu = not torch.cuda.is_available() and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    if on_cpu and args.mixed_precision == "bf16" and not cpu_has_native_bf16():
        logger.warning(
            "--mixed_precision bf16 on this CPU, which has no native bf16 (no AVX512-BF16/AMX): bf16 is emulated and can be "
            "100x slower than --mixed_precision no (fp32)"
        )


def _require(problems: Problems, module: str, needed_for: str) -> None:
    from library.optional_deps import require

    try:
        require(module, needed_for)
    except MissingDependencyError as err:
        problems.add(str(err))


def _noise_and_loss(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    if getattr(args, "adaptive_noise_scale", None) is not None and getattr(args, "noise_offset", None) is None:
        problems.add("--adaptive_noise_scale needs --noise_offset")
    v_param = _on(args, "v_parameterization")
    if _on(args, "scale_v_pred_loss_like_noise_pred") and not v_param:
        problems.add("--scale_v_pred_loss_like_noise_pred works only with --v_parameterization")
    if _on(args, "v_pred_like_loss") and v_param:
        problems.add("--v_pred_like_loss cannot be used with --v_parameterization")
    if _on(args, "zero_terminal_snr") and not v_param:
        logger.warning("--zero_terminal_snr without --v_parameterization: the last timestep carries no signal to predict noise from")
    if _on(args, "debiased_estimation_loss") and _on(args, "zero_terminal_snr") and not v_param:
        problems.add("--debiased_estimation_loss with --zero_terminal_snr needs --v_parameterization (1/sqrt(SNR) is infinite at the last step)")
    if _on(args, "v_pred_like_loss") and _on(args, "zero_terminal_snr"):
        problems.add("--v_pred_like_loss cannot be used with --zero_terminal_snr (its weight is infinite at the last step)")
    if getattr(args, "loss_type", None) in ("huber", "smooth_l1") and not args.huber_c > 0:
        problems.add(f"--huber_c must be positive for --loss_type {args.loss_type}, got {args.huber_c}")


# flags parsed only to be refused when given, with the reason (sd_scripts_flags.REFUSED holds more)
REFUSED_FLAGS = {
    "cache_text_encoder_outputs": "cannot work for Textual Inversion: the text encoders' outputs change as the new token vectors train",
    "cache_text_encoder_outputs_to_disk": "cannot work for Textual Inversion: the text encoders' outputs change as the new token vectors train",
}


def _refused(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    for dest, why in REFUSED_FLAGS.items():
        if _on(args, dest):
            problems.add(f"--{dest} {why}")


def _optimizer(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    from library.training.optimization import optimizer_type_for

    try:
        optimizer_type_for(args)  # --use_8bit_adam / --use_lion_optimizer against --optimizer_type
    except UserError as err:
        problems.add(str(err))


def _logging(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    from library.training.tracking import read_tracker_config, trackers_for

    trackers = trackers_for(args)
    if "tensorboard" in trackers and not _on(args, "logging_dir"):
        problems.add(f"--log_with {args.log_with} needs --logging_dir (the folder TensorBoard writes its logs to)")
    for tracker in trackers:
        _require(problems, tracker, f"--log_with {args.log_with}" if args.log_with else "--logging_dir (logs to TensorBoard)")
    if _on(args, "log_tracker_config"):
        try:
            read_tracker_config(args.log_tracker_config)
        except UserError as err:
            problems.add(str(err))
    unused = [f"--{f}" for f in ("log_tracker_name", "log_tracker_config", "log_config", "log_prefix") if _on(args, f)]
    if unused and not trackers:
        logger.warning("%s: no effect without a tracker (give --logging_dir for TensorBoard, or --log_with)", " and ".join(unused))
    wandb_only = [f"--{f}" for f in ("wandb_run_name", "wandb_api_key") if _on(args, f)]
    if wandb_only and "wandb" not in trackers:
        logger.warning("%s: no effect unless --log_with is wandb or all", " and ".join(wandb_only))


def _sdxl_encoders(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    chosen = getattr(args, "ti_text_encoders", None) if sdxl else None
    if chosen is not None:
        wanted = {part.strip().lower() for part in chosen.split(",") if part.strip()}
        if not wanted or wanted - {"l", "g"}:
            problems.add(f"--ti_text_encoders takes 'l', 'g' or 'l,g' (got {chosen!r})")


def _disabled_intervals(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    """sd-scripts treats a non-positive interval as 'off'; say so instead of dividing by it."""
    for flag in ("sample_every_n_steps", "sample_every_n_epochs"):
        value = getattr(args, flag, None)
        if value is not None and value <= 0:
            logger.warning(f"--{flag} {value} is not positive, so it is disabled")
            setattr(args, flag, None)


def _sd_scripts(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    """sd-scripts' hub, DeepSpeed and --dataset_class flags (refused), and this suite's checks of the sd-scripts flags."""
    from library.training.sd_scripts_flags import sd_scripts_flag_problems

    for line in sd_scripts_flag_problems(args):
        problems.add(line)


def _dynamo_backend(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    """sd-scripts lists backends (tensort, ofi, fx2trt, ...) that a given PyTorch may not have; say so before loading."""
    backend = getattr(args, "dynamo_backend", None)
    if not _on(args, "torch_compile") or backend is None:
        return
    import torch._dynamo

    available = torch._dynamo.list_backends(exclude_tags=())
    if backend not in available:
        problems.add(
            f"--dynamo_backend {backend} is not available in this PyTorch ({torch.__version__}); "
            f"use one of {', '.join(b for b in ('inductor', 'aot_eager', 'eager', 'cudagraphs', 'tvm') if b in available)}"
        )


def _run_values(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    """Values argparse accepts but no run can use: found now, not at the first save or the last step."""
    import math

    from library.training.preflight import check_output_name
    from library.training.token_window import token_window

    window = token_window(args)
    vectors = getattr(args, "num_vectors_per_token", None)
    if vectors is not None and vectors > window:
        problems.add(
            f"--num_vectors_per_token {vectors} cannot fit the {window}-token window of a caption "
            f"(--max_token_length {args.max_token_length or 75}); use at most {window} vectors, or --max_token_length 150 / 225"
        )
    for flag in ("max_train_epochs", "save_every_n_steps", "save_every_n_epochs", "save_last_n_steps", "save_last_n_epochs"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            problems.add(f"--{flag} must be at least 1, got {value}; leave it out to turn it off")
    max_grad_norm = getattr(args, "max_grad_norm", None)
    if max_grad_norm is not None and not (max_grad_norm >= 0 and math.isfinite(max_grad_norm)):
        problems.add(f"--max_grad_norm must be 0 (no clipping) or a positive number, got {max_grad_norm}")
    learning_rate = getattr(args, "learning_rate", None)
    if isinstance(learning_rate, (int, float)) and not (learning_rate >= 0 and math.isfinite(learning_rate)):
        problems.add(f"--learning_rate must be a finite number >= 0, got {learning_rate}")
    try:
        check_output_name(getattr(args, "output_name", None))
    except UserError as err:
        problems.add(str(err))


# a flag whose effect needs another one: (flag, what it needs, whether that is there); warned when missing
NEEDS: tuple[tuple[str, str, Callable[[argparse.Namespace], bool]], ...] = (
    ("noise_offset_random_strength", "--noise_offset", lambda a: bool(getattr(a, "noise_offset", None))),
    ("ip_noise_gamma_random_strength", "--ip_noise_gamma", lambda a: bool(getattr(a, "ip_noise_gamma", None))),
    ("persistent_data_loader_workers", "--max_data_loader_n_workers above 0", lambda a: getattr(a, "max_data_loader_n_workers", 0) > 0),
    ("save_last_n_steps", "--save_every_n_steps", lambda a: bool(getattr(a, "save_every_n_steps", None))),
)


def _cancelled(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    """A flag another flag cancels is said so, naming both, instead of doing nothing silently."""
    for dest, needs, present in NEEDS:
        if _on(args, dest) and not present(args):
            logger.warning("--%s has no effect without %s", dest, needs)
    if _on(args, "sample_every_n_epochs") and _on(args, "sample_every_n_steps"):
        logger.warning(
            "--sample_every_n_epochs %s wins over --sample_every_n_steps %s (as in sd-scripts): samples are made at epoch ends only",
            args.sample_every_n_epochs, args.sample_every_n_steps,
        )


def _ckpt_embeddings(args: argparse.Namespace, sdxl: bool, problems: Problems) -> None:
    """`--save_model_as ckpt` is kept for sd-scripts parity, but the web UIs do not list .ckpt embeddings."""
    if getattr(args, "save_model_as", None) == "ckpt":
        logger.warning(
            "--save_model_as ckpt: AUTOMATIC1111 does not list .ckpt files in its embeddings folder and ComfyUI needs "
            "the extension typed (embedding:NAME.ckpt); use pt or safetensors for the web UIs (docs/embeddings.md)"
        )


FLAG_RULES: tuple[Rule, ...] = (
    _ckpt_embeddings,
    _sd_scripts,
    _dynamo_backend,
    _required_and_counts,
    _precision,
    _machine,
    _slow_bf16,
    _noise_and_loss,
    _refused,
    _sdxl_encoders,
    _optimizer,
    _logging,
    _disabled_intervals,
    _cancelled,
    _run_values,
)


# --- the dataset the flags describe ------------------------------------------------------------------------------


def cached_latents_flag(args: argparse.Namespace) -> str | None:
    """The flag that caches latents, if any (--cache_latents or --cache_latents_to_disk)."""
    for flag in ("cache_latents", "cache_latents_to_disk"):
        if _on(args, flag):
            return f"--{flag}"
    return None


def _dataset_problems(args: argparse.Namespace, problems: Problems) -> None:
    """The dataset config's own problems, and what the flags ask of its subsets (cached latents vs augmentation)."""
    from library.dataset.config import dataset_params_from_args
    from library.dataset.config_schema import DatasetConfigError

    try:
        params = dataset_params_from_args(args)
    except DatasetConfigError as err:
        for line in err.problems:
            problems.add(f"{err.where}: {line}")
        return
    except UserError as err:
        problems.add(str(err))
        return
    _validation_without_split(args, params)
    _concept_problems(args, params, problems)
    cache_flag = cached_latents_flag(args)
    if cache_flag:
        for i, dataset in enumerate(params.datasets):
            for j, subset in enumerate(dataset.subsets):
                for key in ("color_aug", "random_crop"):
                    if getattr(subset, key):
                        problems.add(
                            f"{key} (datasets[{i}].subsets[{j}], or --{key}) cannot be combined with {cache_flag}: cached "
                            f"latents are encoded once, so they cannot change every step; drop one of the two"
                        )


def _concept_problems(args: argparse.Namespace, params, problems: Problems) -> None:
    """Several concepts in one run (issue 17): every training subset needs a token string, and concepts must not clash."""
    from library.training.concepts import resolve_concepts

    if not (getattr(args, "token_string", None) or "").strip():
        unnamed = [f"datasets[{i}].subsets[{j}]" for i, d in enumerate(params.datasets) for j, s in enumerate(d.subsets)
                   if not s.is_reg and s.token_string is None]
        if unnamed:
            problems.add(
                "--token_string is required: the word that stands for your concept in captions, e.g. 'mychar4' "
                f"(or set token_string in the dataset config for {', '.join(unnamed)})"
            )
    try:
        concepts = resolve_concepts(params, args)
    except UserError as err:
        problems.add(str(err))
        return
    if len(concepts) == 1 and getattr(args, "separate_concept_passes", False):
        logger.warning("--separate_concept_passes: no effect with one concept (the dataset config names no other token_string)")
    from library.training.token_window import token_window

    window = token_window(args)
    for concept in concepts:
        if concept.num_vectors > window and concept.num_vectors != getattr(args, "num_vectors_per_token", None):  # the flag's own is reported above
            problems.add(
                f"num_vectors_per_token {concept.num_vectors} of the concept {concept.token_string!r} ({', '.join(concept.subsets)}) "
                f"cannot fit the {window}-token window of a caption; use at most {window} vectors, or --max_token_length 150 / 225"
            )


def _validation_without_split(args: argparse.Namespace, params) -> None:
    given = [f"--{f}" for f in ("validate_every_n_steps", "validate_every_n_epochs", "max_validation_steps", "validation_seed") if getattr(args, f, None) is not None]
    split = getattr(args, "validation_split", 0) or any(d.validation_split for d in params.datasets)
    if given and not split:
        logger.warning(
            "%s: no effect without a validation split (--validation_split, or validation_split in the dataset config)",
            " and ".join(given),
        )


# --- entry points ----------------------------------------------------------------------------------------------


def flag_problems(args: argparse.Namespace, *, sdxl: bool) -> list[str]:
    """Every problem with the flags alone (no files read); warnings for cancelled flags are logged."""
    problems = Problems()
    for rule in FLAG_RULES:
        rule(args, sdxl, problems)
    return problems.lines()


def check_training_flags(args: argparse.Namespace, *, sdxl: bool, dataset: bool = True) -> None:
    """Raise one FlagError listing every problem with the flags and (with `dataset`) the dataset they describe."""
    problems = Problems()
    for line in flag_problems(args, sdxl=sdxl):
        problems.add(line)
    if dataset:
        _dataset_problems(args, problems)
    if problems.lines():
        raise FlagError(problems.lines())
