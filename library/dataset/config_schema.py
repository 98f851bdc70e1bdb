"""sd-scripts' dataset-config schema as data: which key may be written where, with which type.

Mirrors `ConfigSanitizer(support_dreambooth=True, support_finetuning=True, support_controlnet=masked_loss,
support_dropout=False)` in sd-scripts' `library/config_util.py`, i.e. what `train_textual_inversion.py` accepts.
Kept apart from the loader so the docs test and the loader read one table.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Optional

from library.errors import UserError

BOOL, INT, FLOAT, NUMBER, STR, TABLE, RESOLUTION, FLOAT_PAIR = (
    "bool", "int", "float", "number", "str", "table", "resolution", "float_pair",
)

# Subset styles: sd-scripts picks one per [[datasets]] from its subsets' keys.
DREAMBOOTH, FINE_TUNING, MASKED = "DreamBooth", "fine-tuning", "masked-loss"

RESIZE_INTERPOLATIONS = ("lanczos", "nearest", "bilinear", "linear", "bicubic", "cubic", "area", "box")


@dataclass(frozen=True)
class KeySpec:
    name: str
    kind: str
    arg: Optional[str] = None  # argparse dest that fills in when no table sets the key


def _table(*specs: KeySpec) -> dict[str, KeySpec]:
    return {s.name: s for s in specs}


# Describe a [[datasets]] as a whole; may also be written in [general].
DATASET_KEYS = _table(
    KeySpec("resolution", RESOLUTION, "resolution"),
    KeySpec("batch_size", INT, "train_batch_size"),
    KeySpec("enable_bucket", BOOL, "enable_bucket"),
    KeySpec("min_bucket_reso", INT, "min_bucket_reso"),
    KeySpec("max_bucket_reso", INT, "max_bucket_reso"),
    KeySpec("bucket_reso_steps", INT, "bucket_reso_steps"),
    KeySpec("bucket_no_upscale", BOOL, "bucket_no_upscale"),
    KeySpec("network_multiplier", FLOAT, "network_multiplier"),
    KeySpec("validation_seed", INT, "validation_seed"),
    KeySpec("validation_split", FLOAT, "validation_split"),
    KeySpec("resize_interpolation", STR, "resize_interpolation"),
)

# Subset settings that may be written in [general], [[datasets]] or [[datasets.subsets]]; the nearest wins.
SUBSET_INHERITED_KEYS = _table(
    KeySpec("num_repeats", INT, "dataset_repeats"),
    KeySpec("shuffle_caption", BOOL, "shuffle_caption"),
    KeySpec("caption_separator", STR, "caption_separator"),
    KeySpec("keep_tokens", INT, "keep_tokens"),
    KeySpec("keep_tokens_separator", STR, "keep_tokens_separator"),
    KeySpec("secondary_separator", STR, "secondary_separator"),
    KeySpec("enable_wildcard", BOOL, "enable_wildcard"),
    KeySpec("caption_prefix", STR, "caption_prefix"),
    KeySpec("caption_suffix", STR, "caption_suffix"),
    KeySpec("token_warmup_min", INT, "token_warmup_min"),
    KeySpec("token_warmup_step", NUMBER, "token_warmup_step"),
    KeySpec("caption_tag_dropout_rate", NUMBER, "caption_tag_dropout_rate"),
    KeySpec("color_aug", BOOL, "color_aug"),
    KeySpec("flip_aug", BOOL, "flip_aug"),
    KeySpec("face_crop_aug_range", FLOAT_PAIR, "face_crop_aug_range"),
    KeySpec("random_crop", BOOL, "random_crop"),
    KeySpec("resize_interpolation", STR, "resize_interpolation"),
    KeySpec("custom_attributes", TABLE),
)

# Inherited like the above, but only meaningful for DreamBooth-style subsets (captions from files next to images).
DREAMBOOTH_INHERITED_KEYS = _table(
    KeySpec("caption_extension", STR, "caption_extension"),
    KeySpec("class_tokens", STR),
    KeySpec("cache_info", BOOL, "cache_info"),
)

# Written on each [[datasets.subsets]] only.
SUBSET_ONLY_KEYS = _table(
    KeySpec("image_dir", STR),
    KeySpec("is_reg", BOOL),
    KeySpec("alpha_mask", BOOL, "alpha_mask"),
    KeySpec("metadata_file", STR),
    KeySpec("conditioning_data_dir", STR),
)

ALL_KEYS: dict[str, KeySpec] = {
    **DATASET_KEYS, **SUBSET_INHERITED_KEYS, **DREAMBOOTH_INHERITED_KEYS, **SUBSET_ONLY_KEYS,
}

GENERAL_ALLOWED = set(DATASET_KEYS) | set(SUBSET_INHERITED_KEYS) | set(DREAMBOOTH_INHERITED_KEYS)

DATASET_ALLOWED = {
    DREAMBOOTH: set(DATASET_KEYS) | set(SUBSET_INHERITED_KEYS) | set(DREAMBOOTH_INHERITED_KEYS),
    FINE_TUNING: set(DATASET_KEYS) | set(SUBSET_INHERITED_KEYS),
    MASKED: set(DATASET_KEYS) | set(SUBSET_INHERITED_KEYS) | {"caption_extension", "cache_info"},
}

SUBSET_ALLOWED = {
    DREAMBOOTH: set(SUBSET_INHERITED_KEYS) | set(DREAMBOOTH_INHERITED_KEYS) | {"image_dir", "is_reg", "alpha_mask"},
    FINE_TUNING: set(SUBSET_INHERITED_KEYS) | {"metadata_file", "image_dir", "alpha_mask"},
    MASKED: set(SUBSET_INHERITED_KEYS) | {"caption_extension", "cache_info", "image_dir", "conditioning_data_dir"},
}

SUBSET_REQUIRED = {
    DREAMBOOTH: ("image_dir",),
    FINE_TUNING: ("metadata_file",),
    MASKED: ("image_dir", "conditioning_data_dir"),
}

_DROPOUT_REASON = (
    "caption dropout is not supported for Textual Inversion (sd-scripts' train_textual_inversion.py rejects it too): "
    "an empty caption carries no token to learn; delete the line"
)
REJECTED_KEYS = {
    "caption_dropout_rate": _DROPOUT_REASON,
    "caption_dropout_every_n_epochs": _DROPOUT_REASON,
    # caption_tag_dropout_rate is accepted: it never drops the trained token or the keep_tokens prefix
}

CONDITIONING_REASON = (
    "conditioning_data_dir is a ControlNet key; Textual Inversion accepts it only with --masked_loss, as the folder of "
    "mask images (or use alpha_mask = true to take the mask from the image's alpha channel)"
)

# Names users carry over from the command line or other tools -> the dataset-config key to write instead.
CLI_ONLY_NAMES = {
    "train_batch_size": "batch_size",
    "dataset_repeats": "num_repeats",
    "train_data_dir": "image_dir",
    "reg_data_dir": "image_dir (in a subset with is_reg = true)",
    "in_json": "metadata_file",
    "prior_loss_weight": None,
    "debug_dataset": None,
    "max_token_length": None,
    "cache_latents": None,
    "cache_latents_to_disk": None,
    "vae_batch_size": None,
    "max_data_loader_n_workers": None,
    "persistent_data_loader_workers": None,
    "dataset_config": None,
}

_LEVEL_WORDS = {"general": "[general]", "dataset": "[[datasets]]", "subset": "[[datasets.subsets]]"}


def type_description(kind: str) -> str:
    return {
        BOOL: "true or false",
        INT: "an integer",
        FLOAT: "a number",
        NUMBER: "a number",
        STR: "a string",
        TABLE: "a table",
        RESOLUTION: "an integer or [width, height]",
        FLOAT_PAIR: "[low, high] (two numbers)",
    }[kind]


def describe_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    return repr(value)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def convert_value(spec: KeySpec, value: Any) -> tuple[Any, Optional[str]]:
    """Check a TOML value against the key's type; returns (converted value, None) or (None, problem text)."""
    kind = spec.kind
    if kind == BOOL and isinstance(value, bool):
        return value, None
    if kind == INT and _is_int(value):
        return value, None
    if kind in (FLOAT, NUMBER) and _is_number(value):
        return (float(value) if kind == FLOAT else value), None
    if kind == STR and isinstance(value, str):
        return value, None
    if kind == TABLE and isinstance(value, dict):
        return value, None
    if kind == RESOLUTION:
        if _is_int(value):
            return (value, value), None
        if isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value):
            return (value[0], value[1]), None
    if kind == FLOAT_PAIR and isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
        return (float(value[0]), float(value[1])), None
    return None, _type_problem(spec, value)


def _type_problem(spec: KeySpec, value: Any) -> str:
    text = f"'{spec.name}' must be {type_description(spec.kind)}, got {describe_value(value)}"
    if spec.kind == RESOLUTION and isinstance(value, str):
        return text + (
            "; a dataset config takes resolution = 1024 or resolution = [1024, 1024] "
            '(the "W,H" string form is only for --resolution on the command line)'
        )
    if spec.kind == BOOL and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return text + f"; write {value.strip().lower()} without quotes"
    if spec.kind in (INT, FLOAT, NUMBER) and isinstance(value, str):
        return text + "; write the number without quotes"
    if spec.kind == INT and isinstance(value, float):
        return text + "; use a whole number without a decimal point"
    return text


def _suggest(key: str, candidates: set[str]) -> Optional[str]:
    match = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return match[0] if match else None


def explain_unknown_key(key: str, level: str, allowed: set[str], style: Optional[str], masked_loss: bool) -> str:
    """Why `key` is not accepted in a table of `level` ("general", "dataset" or "subset"), and what to write instead."""
    if key in REJECTED_KEYS:
        return f"'{key}' is not accepted: {REJECTED_KEYS[key]}"
    if key == "conditioning_data_dir" and not masked_loss:
        return f"'{key}' is not accepted: {CONDITIONING_REASON}"
    if key in ALL_KEYS:
        return f"'{key}' is not accepted here: {_placement_reason(key, level, style)}"
    if key in CLI_ONLY_NAMES:
        instead = CLI_ONLY_NAMES[key]
        tail = f"; the dataset-config key is '{instead}'" if instead else ""
        return f"unknown key '{key}': it is a command-line option (--{key}), not a dataset-config key{tail}"
    suggestion = _suggest(key, allowed)
    if suggestion:
        return f"unknown key '{key}' (did you mean '{suggestion}'?)"
    elsewhere = _suggest(key, set(ALL_KEYS))
    if elsewhere:
        where = _LEVEL_WORDS[_home_level(elsewhere)]
        return f"unknown key '{key}' (did you mean '{elsewhere}'? it belongs in {where})"
    return f"unknown key '{key}'"


def _home_level(key: str) -> str:
    if key in SUBSET_ONLY_KEYS:
        return "subset"
    if key in DATASET_KEYS and key not in SUBSET_INHERITED_KEYS:
        return "dataset"
    return "general"


def _placement_reason(key: str, level: str, style: Optional[str]) -> str:
    if key in SUBSET_ONLY_KEYS and level != "subset":
        return "it is a per-subset key; write it in each [[datasets.subsets]] that needs it"
    if key in DATASET_KEYS and key not in SUBSET_INHERITED_KEYS and level == "subset":
        return "it applies to a whole dataset; move it to the [[datasets]] table (or [general] for all datasets)"
    if style == FINE_TUNING:
        if key in ("is_reg",):
            return "fine-tuning subsets (those with metadata_file) cannot be regularization subsets"
        return (
            "it only applies to DreamBooth-style subsets (captions in files beside the images); this dataset's "
            "subsets have metadata_file (fine-tuning style), whose captions come from the metadata JSON"
        )
    if style == DREAMBOOTH and key == "metadata_file":
        return "DreamBooth-style and fine-tuning subsets cannot be mixed in one [[datasets]]"
    if style == MASKED:
        return "masked-loss subsets (those with conditioning_data_dir) take no class tokens, is_reg or alpha_mask"
    return f"it is not a key of {_LEVEL_WORDS.get(level, level)}"


TOP_LEVEL_TABLES = ("general", "datasets")


def explain_top_level_key(key: str) -> str:
    """Why a key outside [general]/[[datasets]] is not accepted."""
    if key in ALL_KEYS:
        return (
            f"'{key}' is written outside any table: TOML puts keys that come before the first [table] header at the "
            f"top level; move it under [general] (for all datasets) or into a [[datasets]] table"
        )
    if key == "subsets":
        return "'subsets' must be nested in a dataset: write [[datasets]] and then [[datasets.subsets]] below it"
    suggestion = _suggest(key, set(TOP_LEVEL_TABLES))
    if suggestion:
        return f"unknown top-level table '{key}' (did you mean '{suggestion}'?)"
    if key in CLI_ONLY_NAMES:
        return explain_unknown_key(key, "general", GENERAL_ALLOWED, None, False)
    return f"unknown top-level key '{key}': a dataset config has only [general] and [[datasets]]"


class DatasetConfigError(UserError):
    """All problems found in one dataset config (or in the CLI-only dataset flags), one line each."""

    def __init__(self, where: str, problems: list[str]):
        self.where = where
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = f"{where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{len(self.problems)} problems in {where}:\n{lines}"
        super().__init__(message)
