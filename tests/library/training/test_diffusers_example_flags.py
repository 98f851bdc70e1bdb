"""Every flag of the diffusers Textual Inversion example is accepted, and means what it means there."""

from __future__ import annotations

import pytest

from library.errors import UserError
from library.training.diffusers_example_flags import apply_diffusers_example_args, latest_checkpoint
from train_textual_inversion import setup_parser

# huggingface/diffusers examples/textual_inversion/textual_inversion.py at commit
# 1eeddd0bff13a725b5f575d8d2b1bc26cfcafb14 (parse_args), with the kind of value each takes
DIFFUSERS_SD_FLAGS = {
    "save_steps": "1", "save_as_full_pipeline": None, "num_vectors": "2", "pretrained_model_name_or_path": "m",
    "revision": "main", "variant": "fp16", "tokenizer_name": "t", "train_data_dir": "d", "placeholder_token": "<cat-toy>",
    "initializer_token": "toy", "learnable_property": "object", "repeats": "3", "output_dir": "o", "seed": "1",
    "resolution": "512", "center_crop": None, "train_batch_size": "1", "num_train_epochs": "2", "max_train_steps": "3",
    "gradient_accumulation_steps": "4", "gradient_checkpointing": None, "learning_rate": "5e-4", "scale_lr": None,
    "lr_scheduler": "constant", "lr_warmup_steps": "0", "lr_num_cycles": "1", "dataloader_num_workers": "0",
    "adam_beta1": "0.9", "adam_beta2": "0.99", "adam_weight_decay": "0.01", "adam_epsilon": "1e-8", "push_to_hub": None,
    "hub_token": "secret", "hub_model_id": "x", "logging_dir": "logs", "mixed_precision": "no", "allow_tf32": None,
    "report_to": "tensorboard", "validation_prompt": "a <cat-toy>", "num_validation_images": "1", "validation_steps": "5",
    "validation_epochs": "1", "local_rank": "-1", "checkpointing_steps": "5", "checkpoints_total_limit": "2",
    "resume_from_checkpoint": "latest", "enable_xformers_memory_efficient_attention": None, "no_safe_serialization": None,
}  # fmt: skip
# textual_inversion_sdxl.py at commit b0a6ac95edcbf1bdede056fc166c74ec3da3f720 (check_min_version 0.32.0.dev0):
# the SD list without --tokenizer_name, --validation_epochs and --no_safe_serialization, plus --use_8bit_adam
DIFFUSERS_SDXL_FLAGS = {k: v for k, v in DIFFUSERS_SD_FLAGS.items() if k not in ("tokenizer_name", "validation_epochs", "no_safe_serialization")}
DIFFUSERS_SDXL_FLAGS["use_8bit_adam"] = None
# older versions of the SD example (before --save_as_full_pipeline) had --only_save_embeds
DIFFUSERS_LEGACY_FLAGS = {"only_save_embeds": None}


@pytest.mark.parametrize(
    "sdxl, flags", [(False, {**DIFFUSERS_SD_FLAGS, **DIFFUSERS_LEGACY_FLAGS}), (True, {**DIFFUSERS_SDXL_FLAGS, **DIFFUSERS_LEGACY_FLAGS})],
    ids=["sd", "sdxl"],
)
def test_every_flag_of_the_example_is_accepted_by_the_parser(sdxl, flags):
    parser = setup_parser(sdxl)
    for flag, value in flags.items():
        argv = [f"--{flag}"] + ([value] if value is not None else [])
        args = parser.parse_args(argv)  # argparse exits on an unknown flag
        assert getattr(args, flag) is not None, flag


def _apply(*argv: str, sdxl: bool = False):
    parser = setup_parser(sdxl)
    return apply_diffusers_example_args(parser.parse_args(list(argv)), parser)


def test_the_example_flags_become_our_settings(tmp_path):
    args = _apply(
        "--placeholder_token=<cat-toy>", "--initializer_token=toy", "--num_vectors=3", "--learnable_property=style",
        "--repeats=7", "--num_train_epochs=2", "--save_steps=10", "--lr_num_cycles=3", "--dataloader_num_workers=0",
        "--adam_beta1=0.8", "--adam_weight_decay=0.0", "--adam_epsilon=1e-6", "--enable_xformers_memory_efficient_attention",
        f"--output_dir={tmp_path}",
    )
    assert (args.token_string, args.init_word, args.num_vectors_per_token) == ("<cat-toy>", "toy", 3)
    assert args.use_style_template and not args.use_object_template
    assert args.dataset_repeats == 7 and args.max_train_epochs == 2 and args.save_every_n_steps == 10
    assert args.lr_scheduler_num_cycles == 3 and args.max_data_loader_n_workers == 0 and args.xformers
    assert args.optimizer_args == ["betas=0.8,0.999", "weight_decay=0.0", "eps=1e-06"]
    assert args._diffusers_outputs and args.resolution == (512, 512)


def test_max_train_steps_overrides_num_train_epochs_as_in_the_example():
    args = _apply("--placeholder_token=tok", "--num_train_epochs=2", "--max_train_steps=30")
    assert args.max_train_epochs is None and args.max_train_steps == 30


def test_the_example_defaults_apply_only_in_its_style():
    args = _apply("--placeholder_token=tok")
    assert (args.output_dir, args.dataset_repeats) == ("text-inversion-model", 100)
    ours = _apply("--token_string=tok")
    assert (ours.output_dir, ours.dataset_repeats, ours._diffusers_style) == (None, 1, False)


def test_validation_prompt_becomes_sample_prompts_every_validation_steps():
    args = _apply("--placeholder_token=tok", "--validation_prompt=a tok", "--num_validation_images=2", "--validation_steps=5")
    assert args._sample_prompt_lines == ["a tok", "a tok"] and args.sample_every_n_steps == 5
    by_epoch = _apply("--placeholder_token=tok", "--validation_prompt=a tok", "--validation_epochs=1")
    assert by_epoch.sample_every_n_epochs == 1 and by_epoch.sample_every_n_steps is None


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--placeholder_token=a", "--token_string=b"], ["--placeholder_token", "--token_string"]),
        (["--initializer_token=a", "--init_word=b"], ["--initializer_token", "--init_word"]),
        (["--num_vectors=2", "--num_vectors_per_token=3"], ["--num_vectors", "--num_vectors_per_token"]),
        (["--save_steps=2", "--save_every_n_steps=3"], ["--save_steps", "--save_every_n_steps"]),
        (["--learnable_property=object", "--use_style_template"], ["--learnable_property", "--use_style_template"]),
        (["--report_to=wandb", "--log_with=tensorboard"], ["--report_to", "--log_with"]),
        (["--adam_beta1=0.8", "--optimizer_args", "eps=1"], ["--adam_beta1", "--optimizer_args"]),
        (["--validation_prompt=x", "--sample_prompts=p.txt"], ["--validation_prompt", "--sample_prompts"]),
        (["--save_as_full_pipeline", "--only_save_embeds"], ["--only_save_embeds", "--save_as_full_pipeline"]),
    ],
)
def test_one_setting_given_in_both_styles_is_an_error_naming_both(argv, named):
    with pytest.raises(UserError) as err:
        _apply(*argv)
    for flag in named:
        assert flag in str(err.value)
    assert "\n" not in str(err.value)


def test_learnable_property_other_than_object_or_style_is_refused():
    with pytest.raises(UserError, match=r"--learnable_property must be 'object' or 'style', got 'person'"):
        _apply("--placeholder_token=tok", "--learnable_property=person")


@pytest.mark.parametrize("argv", [["--push_to_hub"], ["--hub_token=hf_SeCrEt123"], ["--hub_model_id=me/cat"]])
def test_hub_flags_are_refused_and_the_token_is_never_echoed(argv):
    with pytest.raises(UserError) as err:
        _apply("--placeholder_token=tok", *argv)
    assert "uploading is not part of this suite" in str(err.value)
    assert "SeCrEt" not in str(err.value)


def test_resume_latest_picks_the_highest_checkpoint_and_refuses_when_there_is_none(tmp_path):
    with pytest.raises(UserError, match="no checkpoint-N folder"):
        _apply("--placeholder_token=tok", "--resume_from_checkpoint=latest", f"--output_dir={tmp_path}")
    for n in (5, 20, 10):
        (tmp_path / f"checkpoint-{n}").mkdir()
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-20")
    args = _apply("--placeholder_token=tok", "--resume_from_checkpoint=latest", f"--output_dir={tmp_path}")
    assert args.resume == str(tmp_path / "checkpoint-20")


def test_model_source_flags_say_what_they_do_here(tmp_path, caplog):
    import logging

    import torch

    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        _apply("--pretrained_model_name_or_path", str(model), "--placeholder_token", "<t>", "--initializer_token", "toy",
               "--revision", "main", "--variant", "fp16", "--tokenizer_name", "other/tokenizer")
    assert "--revision main has no effect on the local model" in caplog.text
    assert "--variant fp16" in caplog.text and "no files of that variant" in caplog.text
    assert "--tokenizer_name other/tokenizer: the CLIP tokenizers are bundled" in caplog.text
    caplog.clear()
    (model / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        _apply("--pretrained_model_name_or_path", str(model), "--placeholder_token", "<t>", "--variant", "fp16")
    assert "also has regular weights, and those are used" in caplog.text
    with pytest.raises(UserError, match="--revision v1: models are loaded from local paths only"):
        _apply("--pretrained_model_name_or_path", "org/hub-model", "--placeholder_token", "<t>", "--revision", "v1")
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        _apply("--pretrained_model_name_or_path", str(model), "--placeholder_token", "<t>", "--allow_tf32")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
