"""Specification of library.training.flag_rules: one owner for cross-flag rules, every problem listed at once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from library.errors import UserError
from library.training.flag_rules import FlagError, check_training_flags, flag_problems
from library.training.parser import build_parser


def _args(*cli: str, sdxl: bool = False):
    return build_parser(sdxl).parse_args(list(cli))


def _dataset(tmp_path: Path, subset_keys: str = "") -> Path:
    images = tmp_path / "img"
    images.mkdir(exist_ok=True)
    config = tmp_path / "dataset.toml"
    config.write_text(f"[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nimage_dir = '{images.as_posix()}'\n{subset_keys}")
    return config


def test_every_problem_is_listed_in_one_error():
    args = _args("--num_vectors_per_token", "0", "--full_fp16", "--adaptive_noise_scale", "0.1")
    with pytest.raises(FlagError) as caught:
        check_training_flags(args, sdxl=False, dataset=False)
    problems = caught.value.problems
    assert problems == [
        "--token_string is required: the word that stands for your concept in captions, e.g. 'mychar4'",
        "--num_vectors_per_token must be at least 1, got 0",
        "--full_fp16 needs --mixed_precision fp16",
        "--adaptive_noise_scale needs --noise_offset",
    ]
    assert str(caught.value).startswith("4 problems with the flags:\n  - --token_string is required")


def test_a_single_problem_is_one_line():
    with pytest.raises(UserError) as caught:
        check_training_flags(_args("--token_string", "x", "--full_bf16"), sdxl=False, dataset=False)
    assert str(caught.value) == "--full_bf16 needs --mixed_precision bf16"


def test_a_blank_token_string_counts_as_missing():
    assert flag_problems(_args("--token_string", "  "), sdxl=False)[0].startswith("--token_string is required")


def test_sdxl_text_encoder_caching_is_refused_only_for_sdxl():
    cli = ("--token_string", "x", "--cache_text_encoder_outputs_to_disk")
    assert flag_problems(_args(*cli, sdxl=True), sdxl=True) == [
        "--cache_text_encoder_outputs_to_disk cannot work for Textual Inversion: the text encoders' outputs change as the new token vectors train"
    ]


@pytest.mark.parametrize("cache_flag", ["--cache_latents", "--cache_latents_to_disk"])
@pytest.mark.parametrize("where", ["flag", "toml"])
def test_cached_latents_refuse_per_step_augmentation_from_flags_or_the_dataset_config(tmp_path, cache_flag, where):
    config = _dataset(tmp_path, "color_aug = true\n" if where == "toml" else "")
    cli = ["--token_string", "x", f"--dataset_config={config}", cache_flag] + (["--color_aug"] if where == "flag" else [])
    with pytest.raises(FlagError) as caught:
        check_training_flags(_args(*cli), sdxl=False)
    assert caught.value.problems == [
        f"color_aug (datasets[0].subsets[0], or --color_aug) cannot be combined with {cache_flag}: cached latents are "
        "encoded once, so they cannot change every step; drop one of the two"
    ]


def test_dataset_problems_join_the_flag_problems(tmp_path):
    args = _args("--num_vectors_per_token", "0", "--token_string", "x", f"--dataset_config={tmp_path / 'missing.toml'}")
    with pytest.raises(FlagError) as caught:
        check_training_flags(args, sdxl=False)
    assert caught.value.problems[0] == "--num_vectors_per_token must be at least 1, got 0"
    assert "missing.toml" in caught.value.problems[1]


def test_flip_aug_is_fine_with_cached_latents(tmp_path):
    config = _dataset(tmp_path, "flip_aug = true\n")
    check_training_flags(_args("--token_string", "x", f"--dataset_config={config}", "--cache_latents"), sdxl=False)


def test_disabled_sampling_interval_is_warned_and_normalised(caplog):
    args = _args("--token_string", "x", "--sample_every_n_epochs", "-1")
    with caplog.at_level(logging.WARNING):
        assert flag_problems(args, sdxl=False) == []
    assert args.sample_every_n_epochs is None and "--sample_every_n_epochs -1 is not positive" in caplog.text


def test_old_optimizer_switches_select_the_optimizer_or_are_refused_naming_both():
    from library.training.optimization import optimizer_type_for

    assert optimizer_type_for(_args("--token_string", "x", "--use_lion_optimizer")) == "Lion"
    assert optimizer_type_for(_args("--token_string", "x", "--use_8bit_adam")) == "AdamW8bit"
    problems = flag_problems(_args("--token_string", "x", "--use_lion_optimizer", "--optimizer_type", "Prodigy"), sdxl=False)
    assert problems == ["--use_lion_optimizer and --optimizer_type Prodigy are both given; keep only --optimizer_type"]


@pytest.mark.parametrize(("cli", "warning"), [
    (["--noise_offset_random_strength"], "--noise_offset_random_strength has no effect without --noise_offset"),
    (["--ip_noise_gamma_random_strength"], "--ip_noise_gamma_random_strength has no effect without --ip_noise_gamma"),
    (["--persistent_data_loader_workers", "--max_data_loader_n_workers=0"],
     "--persistent_data_loader_workers has no effect without --max_data_loader_n_workers above 0"),
    (["--save_last_n_steps=2"], "--save_last_n_steps has no effect without --save_every_n_steps"),
    (["--sample_every_n_epochs=1", "--sample_every_n_steps=5"], "--sample_every_n_epochs 1 wins over --sample_every_n_steps 5"),
])
def test_a_flag_another_cancels_is_warned_about_naming_both(cli, warning, caplog):
    with caplog.at_level(logging.WARNING):
        assert flag_problems(_args("--token_string", "x", *cli), sdxl=False) == []
    assert warning in caplog.text


@pytest.mark.parametrize("fmt, warned", [("ckpt", True), ("pt", False), ("safetensors", False)])
def test_ckpt_embeddings_warn_that_web_uis_do_not_list_them(caplog, fmt, warned):
    # A1111 lists .pt/.bin/.safetensors (and images) in its embeddings folder; ComfyUI needs the extension typed
    with caplog.at_level(logging.WARNING):
        assert flag_problems(_args("--token_string", "mychar4", "--save_model_as", fmt), sdxl=False) == []
    assert ("--save_model_as ckpt: AUTOMATIC1111 does not list .ckpt" in caplog.text) == warned


def test_bf16_on_a_cpu_without_native_bf16_is_warned_about(caplog, monkeypatch):
    import library.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2"}))  # a CPU without AVX512-BF16/AMX
    with caplog.at_level(logging.WARNING):
        assert flag_problems(_args("--token_string", "x", "--mixed_precision", "bf16"), sdxl=False) == []
    assert "no native bf16" in caplog.text and "--mixed_precision no" in caplog.text
    caplog.clear()
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16"}))
    with caplog.at_level(logging.WARNING):
        flag_problems(_args("--token_string", "x", "--mixed_precision", "bf16"), sdxl=False)
    assert "no native bf16" not in caplog.text
