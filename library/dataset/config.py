"""Dataset settings from an sd-scripts dataset TOML or from the CLI-only flags, validated before any image is read.

`load_dataset_config(path, args)` reads `[general]` / `[[datasets]]` / `[[datasets.subsets]]` exactly as sd-scripts
does: a subset's setting comes from the subset, else its dataset, else `[general]`, else the command-line flag of
the same meaning, else the default. `dataset_params_from_args(args)` picks the TOML or the CLI-only forms
(`--train_data_dir` with `N_name` folders, `--reg_data_dir`, `--in_json`). Every problem found is reported in one
`DatasetConfigError`. Nothing here touches the image folders; `check_dataset_paths` does that as a separate step.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Optional, Union

from library.dataset.arguments import default_dataset_args
from library.dataset.config_file import read_config_file
from library.dataset.config_paths import attach_mask_folders, check_dataset_paths
from library.dataset.config_schema import (
    ALL_KEYS, CONCEPT_KEYS, DATASET_ALLOWED, DATASET_KEYS, DREAMBOOTH, DREAMBOOTH_INHERITED_KEYS, FINE_TUNING, GENERAL_ALLOWED,
    MASKED, RESIZE_INTERPOLATIONS, SUBSET_ALLOWED, SUBSET_INHERITED_KEYS, SUBSET_ONLY_KEYS, SUBSET_REQUIRED,
    DatasetConfigError, convert_value, explain_top_level_key, explain_unknown_key,
)
from library.dataset.params import DatasetGroupParams, DatasetParams, SubsetParams
from library.dataset.values import parse_float_pair, parse_resolution
from library.errors import UserError

logger = logging.getLogger(__name__)

__all__ = [
    "DatasetConfigError", "load_dataset_config", "read_config_file", "build_dataset_group",
    "dataset_params_from_args", "check_dataset_paths", "describe_group",
]

# Optional strings where "" means "not set" (sd-scripts' --keep_tokens_separator defaults to "").
_EMPTY_IS_NONE = ("keep_tokens_separator", "secondary_separator", "caption_prefix", "caption_suffix")
_LATENT_FACTOR = 8  # the VAE downsamples by 8: image sides must be multiples of it
_INVALID = object()  # a value that failed its type check: already reported, and not to be reported as missing


class _Problems:
    """An ordered set of problem lines: a mistake in [general] inherited by ten subsets is reported once."""

    def __init__(self) -> None:
        self._lines: dict[str, None] = {}

    def add(self, line: str) -> None:
        self._lines.setdefault(line, None)

    def __bool__(self) -> bool:
        return bool(self._lines)

    def lines(self) -> list[str]:
        return list(self._lines)


# ---------------------------------------------------------------------------------------------------------------
# the whole file -> DatasetGroupParams


def load_dataset_config(path: Union[str, Path], args: Optional[argparse.Namespace] = None) -> DatasetGroupParams:
    """Read and validate an sd-scripts dataset config; flags in `args` fill keys the file leaves out.

    Image folders and metadata files are not opened (see `check_dataset_paths`)."""
    return build_dataset_group(read_config_file(path), args, source=str(path))


def build_dataset_group(
    config: dict, args: Optional[argparse.Namespace] = None, *, source: str = "command line"
) -> DatasetGroupParams:
    """Validate a parsed dataset config (the dict a TOML gives) and apply sd-scripts' inheritance."""
    args = args if args is not None else default_dataset_args()
    from_cli = source == "command line"
    problems = _Problems()
    masked_loss = bool(getattr(args, "masked_loss", False))

    general, datasets = _split_top_level(config, problems)
    general_values = _check_table(general, "general", "general", GENERAL_ALLOWED, None, masked_loss, problems)

    group = DatasetGroupParams(source=source)
    for label, dataset in datasets:
        group.datasets.append(_build_dataset(label, dataset, general_values, args, masked_loss, from_cli, problems))
    if problems:
        where = "command-line dataset flags" if from_cli else f"dataset config {source}"
        raise DatasetConfigError(where, problems.lines())
    return group


def _split_top_level(config: dict, problems: _Problems) -> tuple[dict, list[tuple[str, dict]]]:
    general: dict = {}
    datasets: list[tuple[str, dict]] = []
    for key, value in config.items():
        if key == "general":
            if isinstance(value, dict):
                general = value
            else:
                problems.add("'general' must be one table written [general] (not [[general]] and not a key)")
        elif key == "datasets":
            datasets = _dataset_tables(value, problems)
        else:
            problems.add(explain_top_level_key(key))
    if "datasets" not in config:
        problems.add("no [[datasets]] table: add [[datasets]] and at least one [[datasets.subsets]] with image_dir")
    if any(k in d for _, d in datasets for k in ("image_directory", "video_directory", "cache_directory")):
        problems.add(
            "this looks like a musubi-tuner dataset config (image_directory/cache_directory); this tool reads "
            "sd-scripts' format, where each image folder is a [[datasets.subsets]] table with image_dir"
        )
    return general, datasets


def _dataset_tables(value: Any, problems: _Problems) -> list[tuple[str, dict]]:
    if isinstance(value, dict):
        if "subsets" in value:
            problems.add(
                "'datasets' is a table, not an array of tables: the file has [[datasets.subsets]] without a "
                "[[datasets]] line before it (a fragment copied from the sd-scripts docs?); add a line [[datasets]] "
                "(with resolution/batch_size if needed) above the first [[datasets.subsets]]"
            )
        else:
            problems.add("'datasets' must be written [[datasets]] (double brackets): one such table per dataset")
        return [("datasets", value)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [(f"datasets[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, list) and not value:
        problems.add("'datasets' is empty: add [[datasets]] and at least one [[datasets.subsets]] with image_dir")
    else:
        problems.add("'datasets' must be tables written [[datasets]], not a plain value")
    return []


def _check_table(
    table: dict, label: str, level: str, allowed: set[str], style: Optional[str], masked_loss: bool, problems: _Problems
) -> dict[str, Any]:
    """Accepted keys of one table with their converted values; every other key or bad type becomes a problem."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in allowed:
            problems.add(f"{label}: {explain_unknown_key(key, level, allowed, style, masked_loss)}")
            continue
        converted, problem = convert_value(ALL_KEYS[key], value)
        if problem:
            problems.add(f"{label}: {problem}")
            converted = _INVALID
        values[key] = converted
    return values


def _subset_tables(label: str, dataset: dict, problems: _Problems) -> list[tuple[str, dict]]:
    subsets = dataset.get("subsets")
    if subsets is None:
        problems.add(
            f"{label} has no [[datasets.subsets]]: each dataset needs at least one subset, e.g. "
            f"[[datasets.subsets]] with image_dir = '/path/to/images'"
        )
        return []
    if isinstance(subsets, dict):
        problems.add(f"{label}: write [[datasets.subsets]] (double brackets), one table per subset")
        return [(f"{label}.subsets", subsets)]
    if not isinstance(subsets, list) or not all(isinstance(s, dict) for s in subsets):
        problems.add(f"{label}: 'subsets' must be tables written [[datasets.subsets]]")
        return []
    if not subsets:
        problems.add(f"{label} has no subsets: add at least one [[datasets.subsets]] with image_dir")
    return [(f"{label}.subsets[{j}]", s) for j, s in enumerate(subsets)]


def _subset_styles(
    label: str, subsets: list[tuple[str, dict]], masked_loss: bool, problems: _Problems
) -> tuple[str, list[str]]:
    """sd-scripts' rule: a dataset is masked-loss (ControlNet schema) if every subset has conditioning_data_dir and
    --masked_loss is on, fine-tuning if every subset has metadata_file, DreamBooth if none has; never mixed."""
    with_cond = [masked_loss and "conditioning_data_dir" in s for _, s in subsets]
    with_meta = ["metadata_file" in s for _, s in subsets]
    styles = [MASKED if c else FINE_TUNING if m else DREAMBOOTH for c, m in zip(with_cond, with_meta)]
    if subsets and all(with_cond):
        return MASKED, styles
    if any(with_cond):
        lacking = ", ".join(n for (n, _), c in zip(subsets, with_cond) if not c)
        problems.add(
            f"{label}: with --masked_loss, conditioning_data_dir must be set on every subset of a dataset or on none "
            f"(missing in {lacking}); put the subsets without masks in a separate [[datasets]]"
        )
    if subsets and all(with_meta):
        return FINE_TUNING, styles
    if any(with_meta):
        fine = ", ".join(n for (n, _), m in zip(subsets, with_meta) if m)
        problems.add(
            f"{label} mixes DreamBooth-style subsets (image_dir + caption files) with fine-tuning subsets "
            f"(metadata_file: {fine}); sd-scripts does not allow that: put them in separate [[datasets]]"
        )
    return DREAMBOOTH, styles


def _build_dataset(
    label: str, dataset: dict, general: dict, args: argparse.Namespace, masked_loss: bool, from_cli: bool,
    problems: _Problems,
) -> DatasetParams:
    subsets = _subset_tables(label, dataset, problems)
    style, subset_styles = _subset_styles(label, subsets, masked_loss, problems)
    own = {k: v for k, v in dataset.items() if k != "subsets"}
    values = _check_table(own, label, "dataset", DATASET_ALLOWED[style], style, masked_loss, problems)
    tables = [(label, values), ("general", general)]

    params = DatasetParams()
    sources: dict[str, str] = {}
    for key in DATASET_KEYS:
        value, sources[key] = _resolve(key, tables, args, problems)
        if value is not None:
            setattr(params, key, value)
    params.debug_dataset = bool(getattr(args, "debug_dataset", False))
    prior_loss_weight = getattr(args, "prior_loss_weight", None)
    if prior_loss_weight is not None:
        params.prior_loss_weight = float(prior_loss_weight)
    _check_dataset_values(label, params, sources, from_cli, problems)

    for (subset_label, subset), subset_style in zip(subsets, subset_styles):
        checked = _check_table(
            subset, subset_label, "subset", SUBSET_ALLOWED[subset_style], subset_style, masked_loss, problems
        )
        for required in SUBSET_REQUIRED[subset_style]:
            if required not in subset:
                problems.add(f"{subset_label}: {_missing_key_message(required, subset_style)}")
        params.subsets.append(
            _build_subset(subset_label, subset_style, [(subset_label, checked)] + tables, args, problems)
        )
    if params.subsets and all(s.is_reg for s in params.subsets):
        problems.add(
            f"{label} has only is_reg = true subsets: regularization images are balanced against the same dataset's "
            f"training images, so this dataset would be empty; add its training subset(s) to it"
        )
    return params


def _missing_key_message(key: str, style: str) -> str:
    if key == "image_dir" and style == DREAMBOOTH:
        return (
            "missing 'image_dir': a subset needs the folder of its images (image_dir = '/path/to/images'), "
            "or metadata_file for a fine-tuning subset"
        )
    if key == "image_dir":
        return "missing 'image_dir': a masked-loss subset needs the folder of its images"
    if key == "conditioning_data_dir":
        return "missing 'conditioning_data_dir': the folder of mask images"
    return f"missing '{key}'"


def _subset_fields(style: str) -> list[str]:
    # Which SubsetParams fields a style takes from the tables; the rest keep their defaults, as in sd-scripts'
    # DreamBooth/FineTuning/ControlNet subset params classes.
    fields = list(SUBSET_INHERITED_KEYS) + list(CONCEPT_KEYS) + ["image_dir"]
    if style == DREAMBOOTH:
        fields += list(DREAMBOOTH_INHERITED_KEYS) + ["is_reg", "alpha_mask"]
    elif style == FINE_TUNING:
        fields += ["metadata_file", "alpha_mask"]
    else:
        fields += ["caption_extension", "cache_info", "conditioning_data_dir"]
    return fields


def _build_subset(
    label: str, style: str, tables: list[tuple[str, dict]], args: argparse.Namespace, problems: _Problems
) -> SubsetParams:
    params = SubsetParams()
    sources: dict[str, str] = {}
    for key in _subset_fields(style):
        if key in SUBSET_ONLY_KEYS:  # never inherited from the dataset or [general]
            value, sources[key] = _resolve(key, tables[:1], args, problems)
        else:
            value, sources[key] = _resolve(key, tables, args, problems)
        if key in _EMPTY_IS_NONE and value == "":
            value = None
        if value is not None:
            setattr(params, key, value)
    _check_subset_values(label, style, params, sources, problems)
    return params


def _resolve(
    key: str, tables: list[tuple[str, dict]], args: argparse.Namespace, problems: _Problems
) -> tuple[Any, str]:
    """sd-scripts' search_value: the first table that sets the key, else the flag's value if not None."""
    for label, values in tables:
        if key in values:
            return (None if values[key] is _INVALID else values[key]), label
    arg = ALL_KEYS[key].arg
    value = getattr(args, arg, None) if arg else None
    if value is None:
        return None, "default"
    flag = f"--{arg}"
    try:
        if key == "resolution":
            value = parse_resolution(value)
        elif key == "face_crop_aug_range":
            value = parse_float_pair(value)
    except ValueError as err:
        problems.add(f"{flag}: {err}")
        return None, flag
    return value, flag


def _at(source: str, key: str) -> str:
    return source if source.startswith("--") else f"{source}: {key}"


def _check_dataset_values(label: str, p: DatasetParams, sources: dict, from_cli: bool, problems: _Problems) -> None:
    if p.resolution is None:
        if sources["resolution"] != "default":
            pass  # written but invalid: already reported
        elif from_cli:
            problems.add("no resolution: pass --resolution (e.g. --resolution 512, or 1024 for SDXL)")
        else:
            problems.add(
                f"{label}: no resolution: set resolution = 512 (or [width, height]) in [general] or this "
                f"[[datasets]], or pass --resolution"
            )
    elif min(p.resolution) <= 0 or any(side % _LATENT_FACTOR for side in p.resolution):
        problems.add(
            f"{_at(sources['resolution'], 'resolution')} must be positive multiples of {_LATENT_FACTOR} "
            f"(the VAE works in 8-pixel steps), got {p.resolution[0]}x{p.resolution[1]}"
        )
    if p.batch_size < 1:
        problems.add(f"{_at(sources['batch_size'], 'batch_size')} must be 1 or more, got {p.batch_size}")
    if not 0.0 <= p.validation_split < 1.0:
        problems.add(
            f"{_at(sources['validation_split'], 'validation_split')} must be at least 0 and below 1, "
            f"got {p.validation_split}"
        )
    if p.resize_interpolation is not None and p.resize_interpolation not in RESIZE_INTERPOLATIONS:
        where = _at(sources["resize_interpolation"], "resize_interpolation")
        problems.add(_interpolation_problem(where, p.resize_interpolation))
    if p.network_multiplier != 1.0 and sources["network_multiplier"] != "default":
        logger.warning("%s: network_multiplier has no effect in Textual Inversion (it scales LoRA networks)", label)
    if p.enable_bucket:
        _check_buckets(label, p, sources, problems)


def _check_buckets(label: str, p: DatasetParams, sources: dict, problems: _Problems) -> None:
    steps, low, high = p.bucket_reso_steps, p.min_bucket_reso, p.max_bucket_reso
    if steps < 1 or steps % _LATENT_FACTOR:
        problems.add(
            f"{_at(sources['bucket_reso_steps'], 'bucket_reso_steps')} must be a positive multiple of "
            f"{_LATENT_FACTOR}, got {steps}"
        )
        return
    if low < 1 or high < 1 or low > high:
        problems.add(
            f"{label}: min_bucket_reso ({low}, from {sources['min_bucket_reso']}) must be positive and not above "
            f"max_bucket_reso ({high}, from {sources['max_bucket_reso']})"
        )
        return
    # sd-scripts rounds min down and max up to multiples of bucket_reso_steps, with a warning; so do we.
    if low % steps:
        logger.warning("%s: min_bucket_reso %d rounded down to %d, a multiple of bucket_reso_steps %d",
                       label, low, low - low % steps, steps)
        p.min_bucket_reso = low = low - low % steps
    if high % steps:
        logger.warning("%s: max_bucket_reso %d rounded up to %d, a multiple of bucket_reso_steps %d",
                       label, high, high + steps - high % steps, steps)
        p.max_bucket_reso = high = high + steps - high % steps
    if p.resolution is not None and not (low <= min(p.resolution) and max(p.resolution) <= high):
        problems.add(
            f"{label}: with enable_bucket the resolution {p.resolution[0]}x{p.resolution[1]} must lie within "
            f"min_bucket_reso {low} and max_bucket_reso {high} (sd-scripts requires this too); "
            f"lower min_bucket_reso or raise max_bucket_reso"
        )


def _interpolation_problem(where: str, value: str) -> str:
    return f"{where} must be one of {', '.join(RESIZE_INTERPOLATIONS)}, got '{value}'"


def _check_subset_values(label: str, style: str, p: SubsetParams, sources: dict, problems: _Problems) -> None:
    def at(key: str) -> str:
        return _at(sources[key], key)

    if p.num_repeats < 1:
        problems.add(f"{at('num_repeats')} must be 1 or more, got {p.num_repeats}")
    if p.keep_tokens < 0:
        problems.add(f"{at('keep_tokens')} must be 0 or more, got {p.keep_tokens}")
    if p.token_warmup_min < 0:
        problems.add(f"{at('token_warmup_min')} must be 0 or more, got {p.token_warmup_min}")
    if p.token_warmup_step < 0:
        problems.add(f"{at('token_warmup_step')} must be 0 or more, got {p.token_warmup_step}")
    if not 0 <= p.caption_tag_dropout_rate < 1:
        problems.add(f"{at('caption_tag_dropout_rate')} must be at least 0 and below 1, got {p.caption_tag_dropout_rate}")
    if p.num_vectors_per_token is not None and p.num_vectors_per_token < 1:
        problems.add(f"{at('num_vectors_per_token')} must be 1 or more, got {p.num_vectors_per_token}")
    if p.learning_rate is not None and not p.learning_rate > 0:
        problems.add(f"{at('learning_rate')} must be above 0, got {p.learning_rate}")
    if p.token_string is not None and (not p.token_string.strip() or any(c.isspace() for c in p.token_string)):
        problems.add(f"{at('token_string')} must be one word without spaces, got {p.token_string!r}")
    if p.output_name is not None and (not p.output_name.strip() or p.output_name in (".", "..") or any(c in p.output_name for c in "/\\\0")):
        problems.add(f"{at('output_name')} {p.output_name!r} must be a plain file name without folders (put folders in --output_dir)")
    if p.caption_separator == "":
        problems.add(f"{at('caption_separator')} must not be empty")
    if p.face_crop_aug_range is not None:
        low, high = p.face_crop_aug_range
        if not 0 < low <= high:
            problems.add(f"{at('face_crop_aug_range')} must be [low, high] with 0 < low <= high, got [{low}, {high}]")
    if p.resize_interpolation is not None and p.resize_interpolation not in RESIZE_INTERPOLATIONS:
        problems.add(_interpolation_problem(at("resize_interpolation"), p.resize_interpolation))
    if style != FINE_TUNING and "." not in p.caption_extension:
        guess = f".{p.caption_extension}" if p.caption_extension else ".txt"
        problems.add(
            f"{at('caption_extension')} '{p.caption_extension}' has no dot: caption files are found as image name + "
            f"extension, so 'a.png' would need 'a{p.caption_extension}'; did you mean '{guess}'?"
        )
    for key in ("image_dir", "metadata_file", "conditioning_data_dir"):
        if getattr(p, key) == "" and sources.get(key, "default") != "default":
            problems.add(f"{label}: {key} must not be empty")


# ---------------------------------------------------------------------------------------------------------------
# command line


def dataset_params_from_args(args: argparse.Namespace, *, check_paths: bool = True) -> DatasetGroupParams:
    """The dataset the flags describe: --dataset_config's TOML, or the CLI-only forms as in sd-scripts.

    With `check_paths` (the default) image folders and metadata files are checked too, so every mistake surfaces
    before models are loaded."""
    folders = [f"--{n}" for n in ("train_data_dir", "reg_data_dir", "in_json") if getattr(args, n, None)]
    config_path = getattr(args, "dataset_config", None)
    if config_path:
        if folders:
            raise UserError(
                f"--dataset_config {config_path} describes the whole dataset, so {' and '.join(folders)} would be "
                f"ignored (sd-scripts ignores them with a warning); describe those folders as [[datasets.subsets]] "
                f"in the config, or leave out --dataset_config"
            )
        group = load_dataset_config(config_path, args)
    elif getattr(args, "in_json", None):
        if getattr(args, "reg_data_dir", None):
            raise UserError(
                "--reg_data_dir cannot be combined with --in_json: fine-tuning (metadata) datasets have no "
                "regularization images; use a dataset config with two [[datasets]] if you need both"
            )
        subset = {"metadata_file": args.in_json}
        if getattr(args, "train_data_dir", None):
            subset["image_dir"] = args.train_data_dir
        group = build_dataset_group({"datasets": [{"subsets": [subset]}]}, args)
    elif getattr(args, "train_data_dir", None):
        from library.dataset.flat_folder import subsets_for_train_data_dir

        subsets = subsets_for_train_data_dir(args)  # N_name subfolders as sd-scripts, or a flat folder of images
        group = build_dataset_group({"datasets": [{"subsets": subsets}]}, args)
        if getattr(args, "conditioning_data_dir", None) and getattr(args, "masked_loss", False):
            attach_mask_folders(group, args.conditioning_data_dir)
    elif getattr(args, "reg_data_dir", None):
        raise UserError("--reg_data_dir needs --train_data_dir (the training images) or a --dataset_config")
    else:
        raise UserError(
            "no training images given: pass --dataset_config FILE (see docs/dataset_config.md), or --train_data_dir "
            "DIR whose subfolders are named N_tokens (e.g. DIR/10_mychar, N = repeats), or that holds the images directly"
        )
    if check_paths:
        check_dataset_paths(group)
    return group


def describe_group(group: DatasetGroupParams) -> str:
    """A short human summary, one line per dataset and subset, for the log before training starts."""
    lines = [f"dataset from {group.source}:"]
    for i, d in enumerate(group.datasets):
        reso = f"{d.resolution[0]}x{d.resolution[1]}" if d.resolution else "?"
        bucket = ""
        if d.enable_bucket:
            bucket = f", buckets {d.min_bucket_reso}-{d.max_bucket_reso} step {d.bucket_reso_steps}"
        lines.append(f"  datasets[{i}]: {reso}, batch {d.batch_size}{bucket}")
        for j, s in enumerate(d.subsets):
            kind = "metadata " + str(s.metadata_file) if s.is_fine_tuning else str(s.image_dir)
            reg = " (reg)" if s.is_reg else ""
            lines.append(f"    subsets[{j}]: {kind} x{s.num_repeats}{reg}")
    return "\n".join(lines)
