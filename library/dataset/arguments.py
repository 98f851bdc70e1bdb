"""Dataset command-line flags: sd-scripts' names, meanings and defaults, plus a few of ours.

`add_dataset_arguments(parser)` adds them; `library.dataset.config.dataset_params_from_args(args)` turns the
parsed namespace (and the dataset TOML it may name) into validated `DatasetGroupParams`. The config module
depends on this one (for the flags' defaults), never the other way round.
"""

from __future__ import annotations

import argparse
from typing import Any

from library.dataset.config_schema import RESIZE_INTERPOLATIONS
from library.dataset.values import parse_float_pair, parse_resolution  # noqa: F401 (parse_resolution: re-exported)

LATENT_SAMPLING_MODES = ("once", "deterministic", "random")


def _argtype(fn, name: str):
    def convert(text: str):
        try:
            return fn(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = name
    return convert


def _int_at_least(minimum: int):
    def convert(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {number}")
        return number

    convert.__name__ = f"int>={minimum}"
    return convert


def _fraction(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {number}")
    return number


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every dataset-related flag (sd-scripts' names and defaults) to `parser`, in one argument group."""
    g = parser.add_argument_group("dataset", "where the images are and how they become batches")
    add = g.add_argument

    # where the data is
    add("--dataset_config", type=str, default=None, metavar="FILE",
        help="dataset config (.toml or .json) in sd-scripts' format: [general], [[datasets]], [[datasets.subsets]]. "
             "See docs/dataset_config.md. Cannot be combined with --train_data_dir/--reg_data_dir/--in_json")
    add("--train_data_dir", type=str, default=None, metavar="DIR",
        help="training images without a dataset config: DIR holds subfolders named N_tokens (e.g. 10_mychar girl: "
             "N = repeats, the rest = class tokens); with --in_json, DIR is the image folder of the metadata")
    add("--reg_data_dir", type=str, default=None, metavar="DIR",
        help="regularization images without a dataset config, in N_tokens subfolders like --train_data_dir")
    add("--in_json", type=str, default=None, metavar="FILE",
        help="fine-tuning metadata JSON (captions per image) instead of caption files; images in --train_data_dir")
    add("--dataset_repeats", type=_int_at_least(1), default=1, metavar="N",
        help="repeats of each image for subsets that set no num_repeats, e.g. with --in_json (default: %(default)s)")

    # size and bucketing
    add("--resolution", type=_argtype(parse_resolution, "resolution"), default=None, metavar="SIZE|W,H",
        help="training resolution, '512' or '512,768' (width,height); used where the dataset config sets none")
    add("--enable_bucket", action="store_true",
        help="aspect-ratio bucketing: batch images of similar shape at about resolution's pixel area")
    add("--min_bucket_reso", type=_int_at_least(1), default=256,
        help="smallest bucket side in pixels; rounded down to a multiple of --bucket_reso_steps (default: %(default)s)")
    add("--max_bucket_reso", type=_int_at_least(1), default=1024,
        help="largest bucket side in pixels; rounded up to a multiple of --bucket_reso_steps (default: %(default)s)")
    add("--bucket_reso_steps", type=_int_at_least(1), default=64,
        help="bucket sides are multiples of this; must be a multiple of 8 (default: %(default)s)")
    add("--bucket_no_upscale", action="store_true",
        help="never upscale: buckets come from each image's own size (min/max_bucket_reso are then ignored)")
    add("--resize_interpolation", type=str, default=None, choices=RESIZE_INTERPOLATIONS,
        help="resampling filter when resizing images (default, as in sd-scripts: area when shrinking, lanczos when "
             "enlarging)")

    # captions
    add("--caption_extension", "--caption_extention", dest="caption_extension", type=str, default=".caption",
        help="caption file extension for DreamBooth-style folders (default: %(default)s; most datasets use .txt). "
             "--caption_extention is sd-scripts' old spelling")
    add("--shuffle_caption", action="store_true", help="shuffle the caption's separated tags every step")
    add("--caption_separator", type=str, default=",", help="separator of caption tags (default: %(default)s)")
    add("--keep_tokens", type=_int_at_least(0), default=0, metavar="N",
        help="keep the first N tags in place when shuffling or warming up (default: %(default)s)")
    add("--keep_tokens_separator", type=str, default="", metavar="SEP",
        help="tags before SEP stay fixed (and after a second SEP, too); the rest are shuffled. Overrides --keep_tokens")
    add("--secondary_separator", type=str, default=None, metavar="SEP",
        help="tags joined by SEP move as one tag when shuffling; SEP becomes --caption_separator afterwards")
    add("--enable_wildcard", action="store_true",
        help="expand {a|b|c} in captions to one random choice; a multi-line caption picks one random line")
    add("--caption_prefix", type=str, default=None, help="text put before every caption")
    add("--caption_suffix", type=str, default=None, help="text put after every caption")
    add("--caption_tag_dropout_rate", type=_fraction, default=0.0, metavar="RATE",
        help="drop each caption tag with this probability every step (AUTOMATIC1111's 'drop out tags', 0.1 is its "
             "suggestion); tags holding the trained token and the keep_tokens prefix are never dropped "
             "(default: %(default)s)")
    add("--token_warmup_min", type=_int_at_least(0), default=1, metavar="N",
        help="caption tag warm-up: start with N tags (default: %(default)s)")
    add("--token_warmup_step", type=float, default=0, metavar="STEPS",
        help="caption tag warm-up: all tags from this step on (a value below 1 is a fraction of max_train_steps; "
             "default: %(default)s = no warm-up)")

    # augmentation
    add("--color_aug", action="store_true", help="weak random hue/gamma augmentation (not with --cache_latents)")
    add("--flip_aug", action="store_true", help="random horizontal flip (also works with --cache_latents)")
    add("--face_crop_aug_range", type=_argtype(parse_float_pair, "float_pair"), default=None, metavar="LOW,HIGH",
        help="face-centred crop augmentation, face size range relative to the crop, e.g. '2.0,4.0'")
    add("--random_crop", action="store_true", help="random instead of centre crop (not with --cache_latents)")
    add("--alpha_mask", action="store_true",
        help="use the images' alpha channel as a loss mask (transparent areas are not learned)")
    add("--cache_info", action="store_true",
        help="cache captions and image sizes of DreamBooth-style folders in metadata_cache.json for faster starts")

    # batching and loading
    add("--train_batch_size", type=_int_at_least(1), default=1, metavar="N",
        help="images per batch for datasets whose config sets no batch_size (default: %(default)s)")
    add("--prior_loss_weight", type=float, default=1.0,
        help="loss weight of regularization (is_reg) images (default: %(default)s)")
    add("--max_data_loader_n_workers", type=_int_at_least(0), default=8, metavar="N",
        help="image-loading worker processes, capped at the CPU count; 0 loads in the main process "
             "(default: %(default)s)")
    add("--persistent_data_loader_workers", action="store_true",
        help="keep loader workers alive between epochs (faster epochs, more memory)")
    add("--skip_bad_images", action="store_true",
        help="skip unreadable or corrupt images with a warning instead of stopping before training")

    # latents
    add("--cache_latents", action="store_true",
        help="encode every image with the VAE once before training and keep the latents in memory "
             "(no --color_aug/--random_crop)")
    add("--cache_latents_to_disk", action="store_true",
        help="like --cache_latents, and keep them in .npz files beside the images for later runs")
    add("--vae_batch_size", type=_int_at_least(1), default=1, metavar="N",
        help="images per VAE call when caching latents (default: %(default)s)")
    add("--latent_sampling", type=str, default=None, choices=LATENT_SAMPLING_MODES,
        help="which latent of the VAE's posterior each image trains on: 'once' = one draw per image, reused every "
             "epoch, 'deterministic' = the posterior mean, 'random' = a new draw every step (A1111's three modes). "
             "Default: 'once' with --cache_latents (sd-scripts caches one draw), 'random' without (sd-scripts "
             "encodes every step); the same choices work with or without caching")

    # validation split
    add("--validation_split", type=_fraction, default=0.0, metavar="FRACTION",
        help="fraction of each dataset's images held out for validation loss (default: %(default)s = none)")
    add("--validation_seed", type=int, default=None, metavar="SEED",
        help="seed of the validation split (default: the training --seed)")

    # inspection
    add("--debug_dataset", action="store_true",
        help="do not train: write preview images of processed samples (with captions) to --debug_dataset_dir")
    add("--debug_dataset_dir", type=str, default=None, metavar="DIR",
        help="where --debug_dataset writes its previews (default: OUTPUT_DIR/debug_dataset, or ./debug_dataset)")
    add("--debug_dataset_count", type=_int_at_least(1), default=16, metavar="N",
        help="how many samples --debug_dataset previews (default: %(default)s)")


def default_dataset_args(**overrides: Any) -> argparse.Namespace:
    """The namespace `add_dataset_arguments` gives with no flags, with `overrides` applied (for callers and tests)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_dataset_arguments(parser)
    args = parser.parse_args([])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args
