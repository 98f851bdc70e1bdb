"""Specification of dataset-config loading: sd-scripts' TOML schema and inheritance, TI's rejections, one error
listing every problem, the CLI-only folder forms, and the separate path check."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest

from library.dataset.arguments import default_dataset_args
from library.dataset.config import (
    DatasetConfigError,
    check_dataset_paths,
    dataset_params_from_args,
    describe_group,
    load_dataset_config,
)
from library.errors import UserError

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str, name: str = "dataset.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **flags):
    return load_dataset_config(write(tmp_path, text), default_dataset_args(**flags))


def problems(tmp_path: Path, text: str, **flags) -> list[str]:
    with pytest.raises(DatasetConfigError) as caught:
        load(tmp_path, text, **flags)
    return caught.value.problems


# ---------------------------------------------------------------------------------------------------------------
# real configs written by other people (../shared/realworld, see SOURCES.md)

VALID_FOR_TI = [
    "001_sdscripts-docs-en_db-and-ft-mixed.toml",
    "002_sdscripts-docs-en_same-dir-two-resolutions.toml",
    "004_sdscripts-docs-ja_db-and-ft-mixed-japanese-comments.toml",
    "005_sdscripts-docs-ja_dreambooth-reg-inline-comments.toml",
    "006_sdscripts-docs-ja_caption-extension-caption.toml",
    "007_sdscripts-docs-ja_finetune-metadata.toml",
    "008_sdscripts-docs_textual-inversion.toml",
    "010_easy-lora_minimal-empty-tables.toml",
    "011_kohya-lora-template_dataset-level-keys.toml",
    "012_gta-lora_fluxgym-empty-class-tokens.toml",
    "013_pspace_tabs-general-resolution.toml",
    "014_offlive_dreambooth-reg-man.toml",
    "015_snowfox_7-subsets-dataset-level-aug.toml",
    "016_coppylora_num-repeats-4000.toml",
    "017_archgen_general-after-datasets.toml",
    "018_kohyass-test_dreambooth-bucket.toml",
    "019_kohyass-test_finetune-metadata-windows-path.toml",
    "022_kohyass-cascade_test-dataset-1024.toml",
    "023_train-sd-template_sdxl-database-toml.toml",
    "024_hacknu_sdxl-colab-general-last.toml",
    "025_sd-scripts-docker_aligned-equals-commented-keys.toml",
    # caption_tag_dropout_rate is accepted for TI (it never drops the trained token or the keep_tokens prefix)
    "003_sdscripts-docs-en_keep-tokens-separator-wildcard.toml",
    "020_kohyass-test_multires-three-datasets.toml",
]

# file -> (extra flags it needs, pieces the one-line reasons must contain)
REJECTED_FOR_TI = {
    "021_kohyass-test_masked-loss-conditioning.toml": ["datasets[0].subsets[0]: 'conditioning_data_dir'", "--masked_loss"],
    "invalid/901_server-training_musubi-format.toml": ["musubi-tuner", "'image_directory' (did you mean 'image_dir'?", "datasets[0] has no [[datasets.subsets]]"],
    "invalid/902_sdscripts-docs_validation-string-resolution.toml": ['"1024,1024"', "resolution = [1024, 1024]", "datasets[0].subsets[1]: 'validation_split'", "[[datasets]] table"],
    "invalid/903_sdscripts-docs_masked-loss-fragment-no-datasets.toml": ["'datasets' is a table, not an array of tables", "add a line [[datasets]]"],
    "invalid/904_sdscripts-docs_lllite-fragment-no-datasets.toml": ["'datasets' is a table", "'conditioning_data_dir' is not accepted"],
}


def test_the_realworld_lists_cover_every_file(realworld_dir):
    on_disk = {str(p.relative_to(realworld_dir / "dataset_configs")) for p in (realworld_dir / "dataset_configs").rglob("*.toml")}
    assert on_disk == set(VALID_FOR_TI) | set(REJECTED_FOR_TI)


@pytest.mark.parametrize("name", VALID_FOR_TI)
def test_realworld_config_valid_for_ti_loads(realworld_dir, name):
    # 010 sets no resolution anywhere: like sd-scripts, --resolution fills it in
    args = default_dataset_args(resolution=(512, 512)) if name.startswith("010") else default_dataset_args()
    group = load_dataset_config(realworld_dir / "dataset_configs" / name, args)
    assert group.datasets and all(d.subsets for d in group.datasets)
    for dataset in group.datasets:
        assert dataset.resolution is not None and dataset.batch_size >= 1
        assert all(s.num_repeats >= 1 and (s.image_dir or s.metadata_file) for s in dataset.subsets)
    assert describe_group(group).count("subsets[") == sum(len(d.subsets) for d in group.datasets)


@pytest.mark.parametrize("name", sorted(REJECTED_FOR_TI))
def test_realworld_config_rejected_for_ti_says_why(realworld_dir, name):
    path = realworld_dir / "dataset_configs" / name
    with pytest.raises(DatasetConfigError) as caught:
        load_dataset_config(path, default_dataset_args())
    message = str(caught.value)
    assert str(path) in message
    for piece in REJECTED_FOR_TI[name]:
        assert piece in message
    assert all("\n" not in line for line in caught.value.problems)


def test_sd_scripts_doc_example_inherits_general_dataset_subset(realworld_dir):
    group = load_dataset_config(realworld_dir / "dataset_configs/001_sdscripts-docs-en_db-and-ft-mixed.toml")
    dreambooth, fine_tuning = group.datasets
    assert dreambooth.resolution == (512, 512) and dreambooth.batch_size == 4
    assert [s.keep_tokens for s in dreambooth.subsets] == [2, 3, 1]  # dataset, own, own
    assert [s.class_tokens for s in dreambooth.subsets] == ["hoge girl", "fuga boy", "human"]
    assert [s.is_reg for s in dreambooth.subsets] == [False, False, True]
    assert all(s.caption_extension == ".txt" and s.shuffle_caption for s in dreambooth.subsets)  # from [general]
    assert fine_tuning.resolution == (768, 768) and fine_tuning.batch_size == 2
    (ft,) = fine_tuning.subsets
    assert ft.is_fine_tuning and ft.metadata_file == "C:\\piyo\\piyo_md.json" and ft.keep_tokens == 1  # [general]


def test_general_after_datasets_and_general_level_dataset_keys(realworld_dir):
    (d,) = load_dataset_config(realworld_dir / "dataset_configs/017_archgen_general-after-datasets.toml").datasets
    assert (d.resolution, d.enable_bucket, d.min_bucket_reso, d.max_bucket_reso) == ((1024, 1024), True, 320, 1280)
    assert d.subsets[0].num_repeats == 15 and d.subsets[0].flip_aug and d.subsets[0].keep_tokens == 1


def test_realworld_oddities_keep_their_values(realworld_dir):
    cfgs = realworld_dir / "dataset_configs"
    assert load_dataset_config(cfgs / "012_gta-lora_fluxgym-empty-class-tokens.toml").datasets[0].subsets[0].class_tokens == ""
    assert load_dataset_config(cfgs / "016_coppylora_num-repeats-4000.toml").datasets[0].subsets[0].num_repeats == 4000
    (d,) = load_dataset_config(cfgs / "013_pspace_tabs-general-resolution.toml").datasets
    assert (d.resolution, d.batch_size) == ((896, 896), 2)
    (d,) = load_dataset_config(cfgs / "015_snowfox_7-subsets-dataset-level-aug.toml").datasets
    assert [s.num_repeats for s in d.subsets] == [2, 1, 2, 3, 1, 1, 2] and all(s.flip_aug for s in d.subsets)


def test_masked_loss_accepts_conditioning_data_dir(realworld_dir):
    path = realworld_dir / "dataset_configs/021_kohyass-test_masked-loss-conditioning.toml"
    (d,) = load_dataset_config(path, default_dataset_args(masked_loss=True)).datasets
    (s,) = d.subsets
    assert s.conditioning_data_dir == ".\\test\\masked_loss" and s.caption_extension == ".txt" and s.num_repeats == 10
    assert d.bucket_reso_steps == 32


def test_realworld_metadata_file_passes_the_path_check(realworld_dir, tmp_path):
    meta = realworld_dir / "metadata/kohyass-test_meta-1_lat.json"
    config = write(tmp_path, f"""
        [[datasets]]
        resolution = 512
          [[datasets.subsets]]
          image_dir = '{tmp_path.as_posix()}'
          metadata_file = '{meta.as_posix()}'
        """)
    group = load_dataset_config(config)
    check_dataset_paths(group)
    assert group.datasets[0].subsets[0].is_fine_tuning


# ---------------------------------------------------------------------------------------------------------------
# inheritance and command-line fallbacks


def test_command_line_values_fill_what_the_toml_leaves_out(tmp_path):
    text = """
        [[datasets]]
          [[datasets.subsets]]
          image_dir = '/imgs'
        [[datasets]]
        resolution = [768, 512]
        batch_size = 3
        enable_bucket = false
          [[datasets.subsets]]
          image_dir = '/imgs'
          caption_extension = '.cap'
          num_repeats = 2
        """
    group = load(tmp_path, text, resolution=(640, 640), train_batch_size=5, caption_extension=".txt",
                 enable_bucket=True, min_bucket_reso=320, dataset_repeats=7, shuffle_caption=True, prior_loss_weight=0.5)
    from_cli, from_toml = group.datasets
    assert (from_cli.resolution, from_cli.batch_size, from_cli.enable_bucket, from_cli.min_bucket_reso) == ((640, 640), 5, True, 320)
    assert (from_cli.subsets[0].caption_extension, from_cli.subsets[0].num_repeats) == (".txt", 7)
    assert (from_toml.resolution, from_toml.batch_size, from_toml.enable_bucket) == ((768, 512), 3, False)
    assert (from_toml.subsets[0].caption_extension, from_toml.subsets[0].num_repeats) == (".cap", 2)
    assert all(s.shuffle_caption for d in group.datasets for s in d.subsets)
    assert from_cli.prior_loss_weight == 0.5


def test_defaults_are_sd_scripts_defaults(tmp_path):
    (d,) = load(tmp_path, "[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = 'x'\n").datasets
    assert (d.batch_size, d.enable_bucket, d.min_bucket_reso, d.max_bucket_reso, d.bucket_reso_steps) == (1, False, 256, 1024, 64)
    s = d.subsets[0]
    assert (s.num_repeats, s.caption_extension, s.keep_tokens, s.caption_separator, s.token_warmup_min) == (1, ".caption", 0, ",", 1)
    assert s.keep_tokens_separator is None and s.is_reg is False and s.alpha_mask is False


def test_string_flag_values_from_a_config_file_are_parsed(tmp_path):
    # a --config_file loader sets flags in the namespace without argparse's type conversion
    (d,) = load(tmp_path, "[[datasets]]\n[[datasets.subsets]]\nimage_dir = 'x'\n", resolution="1024,768",
                face_crop_aug_range="2.0,4.0").datasets
    assert d.resolution == (1024, 768) and d.subsets[0].face_crop_aug_range == (2.0, 4.0)
    found = problems(tmp_path, "[[datasets]]\n[[datasets.subsets]]\nimage_dir = 'x'\n", resolution="big")
    assert found == ["--resolution: resolution must be 'SIZE' or 'WIDTH,HEIGHT' with whole numbers, got 'big'"]


def test_subset_only_keys_are_not_inherited_but_fall_back_to_flags(tmp_path):
    found = problems(tmp_path, "[general]\nalpha_mask = true\n[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = 'x'\n")
    assert found == ["general: 'alpha_mask' is not accepted here: it is a per-subset key; write it in each "
                     "[[datasets.subsets]] that needs it"]
    group = load(tmp_path, "[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = 'x'\n", alpha_mask=True)
    assert group.datasets[0].subsets[0].alpha_mask is True


def test_fine_tuning_subsets_ignore_dreambooth_keys_from_general(tmp_path):
    group = load(tmp_path, """
        [general]
        class_tokens = 'girl'
        caption_extension = '.txt'
        [[datasets]]
        resolution = 512
          [[datasets.subsets]]
          metadata_file = 'meta.json'
        """)
    s = group.datasets[0].subsets[0]
    assert s.is_fine_tuning and s.image_dir is None and s.class_tokens is None and s.caption_extension == ".caption"


def test_json_dataset_config_loads(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"datasets": [{"resolution": [512, 768], "subsets": [{"image_dir": "x"}]}]}))
    assert load_dataset_config(path).datasets[0].resolution == (512, 768)


# ---------------------------------------------------------------------------------------------------------------
# mistakes: named with file, table and key; all at once


def test_unknown_key_names_file_table_and_suggests(tmp_path):
    path = write(tmp_path, "[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = 'x'\n[[datasets.subsets]]\nimage_dir = 'y'\nshufle_caption = true\n")
    with pytest.raises(DatasetConfigError) as caught:
        load_dataset_config(path)
    assert str(caught.value) == (
        f"dataset config {path}: datasets[0].subsets[1]: unknown key 'shufle_caption' (did you mean 'shuffle_caption'?)"
    )


def test_every_problem_is_listed_at_once(tmp_path):
    found = problems(tmp_path, """
        [general]
        flip_aug = "true"
        resolutoin = 512
        [[datasets]]
        resolution = 500
        batch_size = 0
          [[datasets.subsets]]
          image_dir = 'a'
          num_repeats = 0
          caption_dropout_rate = 0.1
          [[datasets.subsets]]
          caption_extension = 'txt'
        """)
    assert found == [
        "general: 'flip_aug' must be true or false, got the string \"true\"; write true without quotes",
        "general: unknown key 'resolutoin' (did you mean 'resolution'?)",
        "datasets[0]: resolution must be positive multiples of 8 (the VAE works in 8-pixel steps), got 500x500",
        "datasets[0]: batch_size must be 1 or more, got 0",
        "datasets[0].subsets[0]: 'caption_dropout_rate' is not accepted: caption dropout is not supported for Textual "
        "Inversion (sd-scripts' train_textual_inversion.py rejects it too): an empty caption carries no token to learn; "
        "delete the line",
        "datasets[0].subsets[0]: num_repeats must be 1 or more, got 0",
        "datasets[0].subsets[1]: missing 'image_dir': a subset needs the folder of its images "
        "(image_dir = '/path/to/images'), or metadata_file for a fine-tuning subset",
        "datasets[0].subsets[1]: caption_extension 'txt' has no dot: caption files are found as image name + extension, "
        "so 'a.png' would need 'atxt'; did you mean '.txt'?",
    ]


def test_a_mistake_in_general_is_reported_once(tmp_path):
    found = problems(tmp_path, """
        [general]
        keep_tokens = -1
        [[datasets]]
        resolution = 512
          [[datasets.subsets]]
          image_dir = 'a'
          [[datasets.subsets]]
          image_dir = 'b'
        """)
    assert found == ["general: keep_tokens must be 0 or more, got -1"]


@pytest.mark.parametrize("line, expected", [
    ("num_repeats = '10'", "'num_repeats' must be an integer, got the string \"10\"; write the number without quotes"),
    ("num_repeats = 2.5", "'num_repeats' must be an integer, got 2.5; use a whole number without a decimal point"),
    ("keep_tokens = true", "'keep_tokens' must be an integer, got true"),
    ("face_crop_aug_range = 2.0", "'face_crop_aug_range' must be [low, high] (two numbers), got 2.0"),
    ("face_crop_aug_range = [4.0, 2.0]", "face_crop_aug_range must be [low, high] with 0 < low <= high, got [4.0, 2.0]"),
    ("custom_attributes = 'x'", "'custom_attributes' must be a table, got the string \"x\""),
    ("resize_interpolation = 'cubic2'", "resize_interpolation must be one of lanczos, nearest, bilinear, linear, bicubic, cubic, area, box, got 'cubic2'"),
    ("caption_separator = ''", "caption_separator must not be empty"),
])
def test_subset_value_types_and_ranges(tmp_path, line, expected):
    found = problems(tmp_path, f"[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = 'x'\n{line}\n")
    assert found == [f"datasets[0].subsets[0]: {expected}"]


@pytest.mark.parametrize("lines, expected", [
    ("resolution = [512]", "datasets[0]: 'resolution' must be an integer or [width, height], got an array of 1"),
    ("resolution = true", "datasets[0]: 'resolution' must be an integer or [width, height], got true"),
    ("resolution = 512\nvalidation_split = 1", "datasets[0]: validation_split must be at least 0 and below 1, got 1.0"),
    ("resolution = 512\nenable_bucket = true\nbucket_reso_steps = 12", "datasets[0]: bucket_reso_steps must be a positive multiple of 8, got 12"),
    ("resolution = 512\nenable_bucket = true\nmin_bucket_reso = 2048", "datasets[0]: min_bucket_reso (2048, from datasets[0]) must be positive and not above max_bucket_reso (1024, from --max_bucket_reso)"),
    ("resolution = 512\nenable_bucket = true\nmin_bucket_reso = 768", "datasets[0]: with enable_bucket the resolution 512x512 must lie within min_bucket_reso 768 and max_bucket_reso 1024 (sd-scripts requires this too); lower min_bucket_reso or raise max_bucket_reso"),
    ("resolution = 1536\nenable_bucket = true", "datasets[0]: with enable_bucket the resolution 1536x1536 must lie within min_bucket_reso 256 and max_bucket_reso 1024 (sd-scripts requires this too); lower min_bucket_reso or raise max_bucket_reso"),
    ("resolution = 512\ntrain_batch_size = 4", "datasets[0]: unknown key 'train_batch_size': it is a command-line option (--train_batch_size), not a dataset-config key; the dataset-config key is 'batch_size'"),
    ("resolution = 512\nimage_dir = 'x'", "datasets[0]: 'image_dir' is not accepted here: it is a per-subset key; write it in each [[datasets.subsets]] that needs it"),
])
def test_dataset_value_problems(tmp_path, lines, expected):
    assert problems(tmp_path, f"[[datasets]]\n{lines}\n[[datasets.subsets]]\nimage_dir = 'x'\n") == [expected]


def test_bucket_bounds_are_rounded_to_steps_like_sd_scripts(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        (d,) = load(tmp_path, "[[datasets]]\nresolution = 512\nenable_bucket = true\nmin_bucket_reso = 300\nmax_bucket_reso = 1000\n"
                              "[[datasets.subsets]]\nimage_dir = 'x'\n").datasets
    assert (d.min_bucket_reso, d.max_bucket_reso) == (256, 1024)
    assert "min_bucket_reso 300 rounded down to 256" in caplog.text and "max_bucket_reso 1000 rounded up to 1024" in caplog.text


def test_bucket_settings_are_not_checked_when_bucketing_is_off(tmp_path):
    (d,) = load(tmp_path, "[[datasets]]\nresolution = 1024\nmax_bucket_reso = 4096\nmin_bucket_reso = 5000\n"
                          "[[datasets.subsets]]\nimage_dir = 'x'\n").datasets
    assert not d.enable_bucket


def test_structure_mistakes(tmp_path):
    assert problems(tmp_path, "resolution = 512\n[[datasets]]\n[[datasets.subsets]]\nimage_dir = 'x'\n") == [
        "'resolution' is written outside any table: TOML puts keys that come before the first [table] header at the "
        "top level; move it under [general] (for all datasets) or into a [[datasets]] table",
        "datasets[0]: no resolution: set resolution = 512 (or [width, height]) in [general] or this [[datasets]], or "
        "pass --resolution",
    ]
    assert problems(tmp_path, "[[general]]\nresolution = 512\n[[dataset]]\n") == [
        "'general' must be one table written [general] (not [[general]] and not a key)",
        "unknown top-level table 'dataset' (did you mean 'datasets'?)",
        "no [[datasets]] table: add [[datasets]] and at least one [[datasets.subsets]] with image_dir",
    ]
    assert problems(tmp_path, "[[datasets]]\nresolution = 512\n[datasets.subsets]\nimage_dir = 'x'\n") == [
        "datasets[0]: write [[datasets.subsets]] (double brackets), one table per subset",
    ]


def test_dreambooth_and_fine_tuning_subsets_cannot_share_a_dataset(tmp_path):
    found = problems(tmp_path, """
        [[datasets]]
        resolution = 512
          [[datasets.subsets]]
          image_dir = 'a'
          [[datasets.subsets]]
          metadata_file = 'm.json'
        """)
    assert found == [
        "datasets[0] mixes DreamBooth-style subsets (image_dir + caption files) with fine-tuning subsets "
        "(metadata_file: datasets[0].subsets[1]); sd-scripts does not allow that: put them in separate [[datasets]]"
    ]


def test_fine_tuning_dataset_rejects_dreambooth_keys_with_a_reason(tmp_path):
    found = problems(tmp_path, """
        [[datasets]]
        resolution = 512
        caption_extension = '.txt'
          [[datasets.subsets]]
          metadata_file = 'm.json'
          is_reg = true
        """)
    assert found == [
        "datasets[0]: 'caption_extension' is not accepted here: it only applies to DreamBooth-style subsets (captions "
        "in files beside the images); this dataset's subsets have metadata_file (fine-tuning style), whose captions "
        "come from the metadata JSON",
        "datasets[0].subsets[0]: 'is_reg' is not accepted here: fine-tuning subsets (those with metadata_file) cannot "
        "be regularization subsets",
    ]


def test_masked_loss_needs_conditioning_data_dir_on_all_subsets_or_none(tmp_path):
    found = problems(tmp_path, """
        [[datasets]]
        resolution = 512
          [[datasets.subsets]]
          image_dir = 'a'
          conditioning_data_dir = 'masks'
          [[datasets.subsets]]
          image_dir = 'b'
        """, masked_loss=True)
    assert found[0].startswith("datasets[0]: with --masked_loss, conditioning_data_dir must be set on every subset")
    assert "(missing in datasets[0].subsets[1])" in found[0]


def test_dataset_of_only_regularization_subsets_is_refused(tmp_path):
    found = problems(tmp_path, "[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = 'r'\nis_reg = true\n")
    assert found[0].startswith("datasets[0] has only is_reg = true subsets")


def test_cached_latents_with_augmentation_are_left_to_the_flag_rules(tmp_path):
    # the cross-flag rule lives in library.training.flag_rules (tests/library/training/test_flag_rules.py)
    load(tmp_path, "[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = 'a'\ncolor_aug = true\n", cache_latents=True)


def test_network_multiplier_is_accepted_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        load(tmp_path, "[[datasets]]\nresolution = 512\nnetwork_multiplier = 0.5\n[[datasets.subsets]]\nimage_dir = 'a'\n")
    assert "network_multiplier has no effect in Textual Inversion" in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# the file itself


def test_toml_syntax_error_gives_line_column_and_a_hint(tmp_path):
    path = write(tmp_path, '[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = "C:\\hoge"\n')
    with pytest.raises(UserError) as caught:
        load_dataset_config(path)
    first, source, caret = str(caught.value).splitlines()
    assert first.startswith(f"TOML syntax error in {path}, line 4, column 16: ")
    assert "write Windows paths in single quotes" in first
    assert source == '    image_dir = "C:\\hoge"' and caret == "                   ^"


@pytest.mark.parametrize("value, hint", [
    ("None", "TOML has no None/null: delete the line to use the default"),
    ("True", "TOML booleans are lowercase: true"),
    ("txt", "strings need quotes: 'txt'"),
])
def test_toml_syntax_hints(tmp_path, value, hint):
    with pytest.raises(UserError, match="line 2, column") as caught:
        load_dataset_config(write(tmp_path, f"[general]\nsome_key = {value}\n"))
    assert hint in str(caught.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="dataset config not found"):
        load_dataset_config(tmp_path / "missing.toml")
    with pytest.raises(UserError, match=r"must be a \.toml file"):
        load_dataset_config(write(tmp_path, "[general]\n", name="dataset.yaml"))
    bad = tmp_path / "latin1.toml"
    bad.write_bytes("[general]\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8 text"):
        load_dataset_config(bad)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = 'x'\n")
    assert load_dataset_config(bom).datasets[0].resolution == (512, 512)


# ---------------------------------------------------------------------------------------------------------------
# example configs shipped in configs/


@pytest.mark.parametrize("name", ["dataset_ti_example.toml", "dataset_sdxl_example.toml"])
def test_example_configs_load(name):
    group = load_dataset_config(REPO / "configs" / name)
    assert group.datasets and all(d.subsets for d in group.datasets)


# ---------------------------------------------------------------------------------------------------------------
# command line without a dataset config


def make_tree(root: Path, *folders: str) -> Path:
    for folder in folders:
        (root / folder).mkdir(parents=True)
        (root / folder / "a.png").write_bytes(b"")
    return root


def test_train_and_reg_folders_become_subsets(tmp_path, caplog):
    train = make_tree(tmp_path / "train", "10_mychar girl", "3_mychar_alt", "notes", ".ipynb_checkpoints", "0_off")
    reg = make_tree(tmp_path / "reg", "1_girl")
    args = default_dataset_args(train_data_dir=str(train), reg_data_dir=str(reg), resolution=(512, 512),
                                caption_extension=".txt", train_batch_size=2)
    with caplog.at_level(logging.WARNING):
        (d,) = dataset_params_from_args(args).datasets
    assert [(Path(s.image_dir).name, s.num_repeats, s.class_tokens, s.is_reg) for s in d.subsets] == [
        ("10_mychar girl", 10, "mychar girl", False),
        ("3_mychar_alt", 3, "mychar_alt", False),
        ("1_girl", 1, "girl", True),
    ]
    assert d.batch_size == 2 and all(s.caption_extension == ".txt" for s in d.subsets)
    assert "skipping folder 'notes'" in caplog.text and "skipping folder '0_off'" in caplog.text
    assert ".ipynb_checkpoints" not in caplog.text


def test_train_data_dir_with_images_directly_in_it_is_one_flat_subset(tmp_path, caplog):
    # issue 18: the diffusers example's and AUTOMATIC1111's layout (before, an error asking for N_name subfolders)
    flat = tmp_path / "mychar"
    flat.mkdir()
    (flat / "a.png").write_bytes(b"")
    (s,) = dataset_params_from_args(default_dataset_args(train_data_dir=str(flat), resolution=(512, 512), dataset_repeats=3)).datasets[0].subsets
    assert (s.image_dir, s.num_repeats, s.class_tokens) == (str(flat), 3, None)
    inner = make_tree(tmp_path / "train", "10_mychar") / "10_mychar"
    (inner / "b.png").write_bytes(b"")
    with caplog.at_level("WARNING"):
        dataset_params_from_args(default_dataset_args(train_data_dir=str(inner), resolution=(512, 512)))
    assert "10_mychar looks like an N_name folder" in caplog.text and "pass its parent" in caplog.text
    with pytest.raises(UserError, match="--train_data_dir .* does not exist"):
        dataset_params_from_args(default_dataset_args(train_data_dir=str(tmp_path / "nope")))


def test_in_json_makes_a_fine_tuning_subset(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"a.png": {"caption": "a photo"}}))
    args = default_dataset_args(train_data_dir=str(tmp_path), in_json=str(meta), resolution=(512, 512), dataset_repeats=4)
    (s,) = dataset_params_from_args(args).datasets[0].subsets
    assert (s.metadata_file, s.image_dir, s.num_repeats) == (str(meta), str(tmp_path), 4)


@pytest.mark.parametrize("flags, message", [
    (dict(dataset_config="d.toml", train_data_dir="x"), "--dataset_config d.toml describes the whole dataset, so --train_data_dir would be ignored"),
    (dict(in_json="m.json", reg_data_dir="r"), "--reg_data_dir cannot be combined with --in_json"),
    (dict(reg_data_dir="r"), "--reg_data_dir needs --train_data_dir"),
    (dict(), "no training images given: pass --dataset_config FILE"),
])
def test_conflicting_or_missing_dataset_flags(flags, message):
    with pytest.raises(UserError, match="^" + message.replace(".", r"\.").replace("-", r"\-")):
        dataset_params_from_args(default_dataset_args(**flags))


def test_command_line_dataset_without_resolution(tmp_path):
    train = make_tree(tmp_path / "train", "5_x")
    with pytest.raises(DatasetConfigError) as caught:
        dataset_params_from_args(default_dataset_args(train_data_dir=str(train)))
    assert str(caught.value) == "command-line dataset flags: no resolution: pass --resolution (e.g. --resolution 512, or 1024 for SDXL)"


# ---------------------------------------------------------------------------------------------------------------
# the path check, separate from loading


def test_path_check_lists_every_missing_path_once(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    config = write(tmp_path, f"""
        [[datasets]]
        resolution = 512
          [[datasets.subsets]]
          image_dir = '{tmp_path.as_posix()}/images'
          [[datasets.subsets]]
          image_dir = '/no/such/dir'
        [[datasets]]
        resolution = 768
          [[datasets.subsets]]
          image_dir = '/no/such/dir'
        [[datasets]]
        resolution = 512
          [[datasets.subsets]]
          metadata_file = '{tmp_path.as_posix()}/bad.json'
          [[datasets.subsets]]
          metadata_file = '{tmp_path.as_posix()}/list.json'
          [[datasets.subsets]]
          metadata_file = 'C:\\data\\meta.json'
        """)
    group = load_dataset_config(config)  # loading never looks at the folders
    with pytest.raises(DatasetConfigError) as caught:
        check_dataset_paths(group)
    assert caught.value.problems == [
        "datasets[0].subsets[1], datasets[1].subsets[0]: image_dir '/no/such/dir' does not exist",
        f"datasets[2].subsets[0]: metadata_file '{tmp_path.as_posix()}/bad.json' is not valid JSON: line 1, column 2: "
        "Expecting property name enclosed in double quotes",
        f"datasets[2].subsets[1]: metadata_file '{tmp_path.as_posix()}/list.json' must hold a JSON object mapping "
        "image keys to their captions/tags",
        "datasets[2].subsets[2]: metadata_file 'C:\\data\\meta.json' does not exist (a Windows path: on this system "
        "write the folder as it is here, with / separators)",
    ]
    assert str(config) in str(caught.value)


def test_relative_paths_are_from_the_working_directory_with_a_hint(tmp_path, monkeypatch):
    (tmp_path / "cfg" / "imgs").mkdir(parents=True)
    config = write(tmp_path / "cfg", "[[datasets]]\nresolution = 512\n[[datasets.subsets]]\nimage_dir = 'imgs'\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetConfigError, match="not from the config's folder; write .*cfg/imgs"):
        check_dataset_paths(load_dataset_config(config))
    monkeypatch.chdir(tmp_path / "cfg")
    check_dataset_paths(load_dataset_config(config))


def test_docs_describe_every_key():
    from library.dataset.config_schema import ALL_KEYS, REJECTED_KEYS

    docs = (REPO / "docs" / "dataset_config.md").read_text()
    missing = [key for key in [*ALL_KEYS, *REJECTED_KEYS] if f"| `{key}` |" not in docs and f"`{key}`" not in docs]
    assert not missing
