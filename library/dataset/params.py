"""Validated dataset settings: the typed result of a dataset TOML or of the CLI-only flags.

Field names and defaults are sd-scripts' dataset-config keys, so a user's TOML maps onto them one to one.
The config parser (`library.dataset.config`) fills these; the dataset builder consumes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class SubsetParams:
    """One `[[datasets.subsets]]` table after general -> dataset -> subset inheritance."""

    image_dir: Optional[str] = None
    metadata_file: Optional[str] = None  # set: fine-tuning subset (captions from JSON)
    num_repeats: int = 1
    is_reg: bool = False
    class_tokens: Optional[str] = None
    caption_extension: str = ".caption"
    cache_info: bool = False
    # caption processing
    shuffle_caption: bool = False
    caption_separator: str = ","
    keep_tokens: int = 0
    keep_tokens_separator: Optional[str] = None
    secondary_separator: Optional[str] = None
    enable_wildcard: bool = False
    caption_prefix: Optional[str] = None
    caption_suffix: Optional[str] = None
    token_warmup_min: int = 1
    token_warmup_step: float = 0
    caption_tag_dropout_rate: float = 0.0  # never drops the trained token or the keep_tokens prefix
    # image augmentation
    color_aug: bool = False
    flip_aug: bool = False
    face_crop_aug_range: Optional[tuple[float, float]] = None
    random_crop: bool = False
    alpha_mask: bool = False
    resize_interpolation: Optional[str] = None
    custom_attributes: Optional[dict] = None
    # masked-loss mode only (--masked_loss): folder of mask images named like the training images
    conditioning_data_dir: Optional[str] = None

    @property
    def is_fine_tuning(self) -> bool:
        return self.metadata_file is not None


@dataclass
class DatasetParams:
    """One `[[datasets]]` table: resolution, batching and bucketing shared by its subsets."""

    subsets: list[SubsetParams] = field(default_factory=list)
    resolution: Optional[tuple[int, int]] = None  # (width, height)
    batch_size: int = 1
    enable_bucket: bool = False
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False
    network_multiplier: float = 1.0
    debug_dataset: bool = False
    validation_seed: Optional[int] = None
    validation_split: float = 0.0
    resize_interpolation: Optional[str] = None
    prior_loss_weight: float = 1.0  # loss weight of is_reg images (--prior_loss_weight; not a TOML key)


@dataclass
class DatasetGroupParams:
    """Everything a dataset TOML (or the CLI-only flags) describes; `source` names where it came from."""

    datasets: list[DatasetParams] = field(default_factory=list)
    source: str = "command line"
