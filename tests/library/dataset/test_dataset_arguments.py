"""Specification of the dataset flags: sd-scripts' names and defaults, parsing at the edge, help for every flag."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from library.dataset.arguments import add_dataset_arguments, default_dataset_args, parse_resolution

# flag -> sd-scripts' default (train_util.add_dataset_arguments / add_training_arguments / config_util), or ours
SD_SCRIPTS_DEFAULTS = {
    "dataset_config": None, "train_data_dir": None, "reg_data_dir": None, "in_json": None, "dataset_repeats": 1,
    "resolution": None, "enable_bucket": False, "min_bucket_reso": 256, "max_bucket_reso": 1024,
    "bucket_reso_steps": 64, "bucket_no_upscale": False, "resize_interpolation": None,
    "caption_extension": ".caption", "shuffle_caption": False, "caption_separator": ",", "keep_tokens": 0,
    "keep_tokens_separator": "", "secondary_separator": None, "enable_wildcard": False, "caption_prefix": None,
    "caption_suffix": None, "token_warmup_min": 1, "token_warmup_step": 0, "color_aug": False, "flip_aug": False,
    "face_crop_aug_range": None, "random_crop": False, "alpha_mask": False, "cache_info": False,
    "train_batch_size": 1, "prior_loss_weight": 1.0, "cache_latents": False, "cache_latents_to_disk": False,
    "vae_batch_size": 1, "debug_dataset": False, "max_data_loader_n_workers": 8,
    "persistent_data_loader_workers": False, "validation_split": 0.0, "validation_seed": None,
}
OURS = {"skip_bad_images": False, "latent_sampling": None, "debug_dataset_dir": None, "debug_dataset_count": 16,
        "caption_tag_dropout_rate": 0.0}  # sd-scripts adds this one only for trainers with support_dropout, not TI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_dataset_arguments(p)
    return p


def test_defaults_match_sd_scripts():
    assert vars(default_dataset_args()) == {**SD_SCRIPTS_DEFAULTS, **OURS}


def test_every_flag_has_help():
    for action in parser()._actions:
        assert action.help and len(action.help) > 15, action.dest


def test_old_caption_extension_spelling_is_an_alias():
    assert parser().parse_args(["--caption_extention", ".txt"]).caption_extension == ".txt"
    assert parser().parse_args(["--caption_extension", ".tags"]).caption_extension == ".tags"


@pytest.mark.parametrize("text, size", [("512", (512, 512)), ("512,768", (512, 768)), (" 1024 , 1024 ", (1024, 1024))])
def test_resolution_flag_becomes_width_height(text, size):
    assert parser().parse_args(["--resolution", text]).resolution == size
    assert parse_resolution(text) == size


@pytest.mark.parametrize("argv", [
    ["--resolution", "512,768,1024"], ["--resolution", "big"], ["--resolution", "0"],
    ["--train_batch_size", "0"], ["--dataset_repeats", "0"], ["--keep_tokens", "-1"],
    ["--validation_split", "1.5"], ["--face_crop_aug_range", "2.0"], ["--resize_interpolation", "fancy"],
    ["--latent_sampling", "sometimes"],
])
def test_bad_flag_values_are_refused_at_parse_time(argv):
    with pytest.raises(argparse.ArgumentError):
        parser().parse_args(argv)


def test_flag_values_are_typed():
    args = parser().parse_args([
        "--face_crop_aug_range", "2.0,4.0", "--token_warmup_step", "0.5", "--validation_split", "0.1",
        "--validation_seed", "7", "--latent_sampling", "deterministic", "--enable_bucket", "--bucket_no_upscale",
    ])
    assert args.face_crop_aug_range == (2.0, 4.0) and args.token_warmup_step == 0.5
    assert (args.validation_split, args.validation_seed, args.latent_sampling) == (0.1, 7, "deterministic")
    assert args.enable_bucket and args.bucket_no_upscale


def test_help_shows_each_default_once_with_the_trainers_formatter():
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataset_arguments(p)
    text = " ".join(p.format_help().split())
    assert text.count("(default: 256)") == 1 and "(default: 256) (default: 256)" not in text
    assert "--caption_extension CAPTION_EXTENSION, --caption_extention CAPTION_EXTENSION" in text


def test_docs_list_every_flag():
    docs = (Path(__file__).resolve().parents[3] / "docs" / "dataset_config.md").read_text()
    flags = [s for action in parser()._actions for s in action.option_strings]
    assert [f for f in flags if f"`{f}" not in docs and f"{f}`" not in docs] == []
