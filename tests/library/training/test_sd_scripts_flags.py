"""Specification: every sd-scripts Textual Inversion command line parses here, and the flags that came with
them either do what sd-scripts does or stop with a reason."""

from __future__ import annotations

import argparse
import datetime

import pytest

import train_textual_inversion
from library.cli import run_main
from library.errors import UserError
from library.training import sd_scripts_flags as sf
from library.training.run_setup import ddp_kwargs_handlers
from tests.data.sd_scripts_ti_flags import CHOICES, SDXL_ONLY, SDXL_TI_FLAGS, TI_FLAGS


@pytest.fixture(scope="module")
def parsers() -> dict[bool, argparse.ArgumentParser]:
    return {sdxl: train_textual_inversion.setup_parser(sdxl) for sdxl in (False, True)}


def parse(argv: list[str], sdxl: bool = False) -> argparse.Namespace:
    return train_textual_inversion.setup_parser(sdxl).parse_args(argv)


# --- the full flag list -------------------------------------------------------------------------------------


def test_the_written_down_flag_lists_are_sd_scripts_whole_parsers():
    # sizes of sd-scripts' TI parsers at the recorded version: 169 flags, and one more for SDXL
    assert len(TI_FLAGS) == 169 and len(SDXL_TI_FLAGS) == 170
    assert set(SDXL_TI_FLAGS) - set(TI_FLAGS) == set(SDXL_ONLY) == {"--disable_mmap_load_safetensors"}


@pytest.mark.parametrize("sdxl", [False, True], ids=["sd", "sdxl"])
def test_every_sd_scripts_ti_flag_is_accepted_with_a_valid_value(parsers, sdxl):
    flags = SDXL_TI_FLAGS if sdxl else TI_FLAGS
    refused = []
    for flag, value in flags.items():
        try:
            parsers[sdxl].parse_args([flag, *value])
        except SystemExit:
            refused.append(flag)
    assert refused == []


@pytest.mark.parametrize("flag", sorted(CHOICES))
def test_every_choice_sd_scripts_accepts_is_accepted(parsers, flag):
    refused = []
    for value in CHOICES[flag]:
        try:
            parsers[True].parse_args([flag, value])
        except SystemExit:
            refused.append(value)
    assert refused == []


def test_a_command_line_with_all_flags_at_once_parses(parsers):
    argv = [word for flag, value in SDXL_TI_FLAGS.items() for word in (flag, *value)]
    args = parsers[True].parse_args(argv)
    assert args.zero_stage == 2 and args.ddp_timeout == 30 and args.metadata_trigger_phrase == "mychar4"


# --- accepted but refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize("refused", sf.REFUSED, ids=lambda f: f.flag)
def test_each_refused_flag_stops_with_the_reason(refused, parsers):
    args = parsers[False].parse_args([refused.flag, *TI_FLAGS[refused.flag]])
    with pytest.raises(UserError) as err:
        sf.refuse_unsupported(args)
    message = str(err.value)
    assert refused.flag in message and "not supported for Textual Inversion" in message
    assert refused.why in message


def test_refused_flags_are_reported_together_and_a_hub_token_is_never_echoed(parsers):
    args = parsers[False].parse_args(
        ["--huggingface_repo_id", "me/x", "--huggingface_token", "hf_SECRET123", "--deepspeed", "--zero_stage", "3"]
    )
    with pytest.raises(UserError) as err:
        sf.refuse_unsupported(args)
    message = str(err.value)
    assert "--huggingface_repo_id, --huggingface_token" in message
    assert "--deepspeed, --zero_stage" in message
    assert "hf_SECRET123" not in message


def test_the_trainer_exits_with_the_refusal_before_loading_anything(tmp_path, capsys):
    argv = ["--pretrained_model_name_or_path", str(tmp_path / "missing.safetensors"), "--token_string", "x",
            "--train_data_dir", str(tmp_path), "--huggingface_token", "hf_SECRET123", "--huggingface_repo_id", "me/x"]
    code = run_main(train_textual_inversion.main, argv)
    err = capsys.readouterr().err
    assert code == 2 and "not supported for Textual Inversion" in err
    assert "Traceback" not in err and "hf_SECRET123" not in err


def test_unset_refused_flags_pass(parsers):
    sf.refuse_unsupported(parsers[False].parse_args([]))  # defaults never count as "given"


def test_fused_backward_pass_is_a_documented_no_effect_flag(parsers):
    from library.training.compat_flags import COMPAT_DESTS

    assert "fused_backward_pass" in COMPAT_DESTS
    args = parsers[False].parse_args(["--fused_backward_pass"])
    assert sf.sd_scripts_flag_problems(args) == []


def test_secrets_stay_out_of_metadata_and_trackers(parsers):
    args = parsers[False].parse_args(["--wandb_api_key", "k", "--huggingface_token", "t", "--seed", "3"])
    args.hub_token = "t2"  # the diffusers example's name, when its flags are composed in
    public = sf.public_args(args)
    assert not {"wandb_api_key", "huggingface_token", "hub_token"} & set(public) and public["seed"] == 3


# --- implemented flags: pure rules -----------------------------------------------------------------------------

# sd-scripts (train_textual_inversion.py, train_network.py): if save_n_epoch_ratio > 0,
# save_every_n_epochs = floor(num_train_epochs / save_n_epoch_ratio) or 1; it overrides --save_every_n_epochs
SAVE_N_EPOCH_RATIO_CASES = [  # (epochs, ratio, --save_every_n_epochs, result)
    (10, 5, None, 2),
    (10, 3, None, 3),
    (10, 20, None, 1),
    (10, 5, 7, 2),
    (10, None, 7, 7),
    (10, 0, 4, 4),
]


@pytest.mark.parametrize("epochs,ratio,every,expected", SAVE_N_EPOCH_RATIO_CASES)
def test_save_n_epoch_ratio_follows_sd_scripts(epochs, ratio, every, expected):
    args = argparse.Namespace(save_n_epoch_ratio=ratio, save_every_n_epochs=every)
    assert sf.save_every_n_epochs_for(args, epochs) == expected


def test_metadata_flags_become_modelspec_entries(tmp_path, parsers):
    thumb = tmp_path / "thumb.png"
    thumb.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    args = parsers[False].parse_args([
        "--metadata_usage_hint", "put mychar4 first", "--metadata_thumbnail", str(thumb),
        "--metadata_merged_from", "a, b", "--metadata_trigger_phrase", "mychar4 girl",
        "--metadata_preprocessor", "none", "--metadata_is_negative_embedding", "true",
    ])
    assert sf.modelspec_extras(args) == {
        "modelspec.usage_hint": "put mychar4 first",
        "modelspec.thumbnail": "data:image/png;base64,iVBORw0KGgpmYWtl",
        "modelspec.merged_from": "a, b",
        "modelspec.trigger_phrase": "mychar4 girl",
        "modelspec.preprocessor": "none",
        "modelspec.is_negative_embedding": "true",
    }


def test_a_thumbnail_data_url_is_kept_and_a_missing_file_is_a_clear_error(tmp_path):
    assert sf.thumbnail_data_url("data:image/webp;base64,AAAA") == "data:image/webp;base64,AAAA"
    with pytest.raises(UserError, match="--metadata_thumbnail .*no such image file"):
        sf.thumbnail_data_url(str(tmp_path / "nope.png"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not an image file"):
        sf.thumbnail_data_url(str(tmp_path / "notes.txt"))


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--conditioning_data_dir", "m"], "needs --masked_loss"),
        (["--conditioning_data_dir", "m", "--masked_loss", "--dataset_config", "d.toml"], "set conditioning_data_dir"),
        (["--conditioning_data_dir", "m", "--masked_loss"], "needs --train_data_dir"),
        (["--save_n_epoch_ratio", "0"], "--save_n_epoch_ratio must be at least 1"),
        (["--ddp_timeout", "0"], "--ddp_timeout must be at least 1"),
    ],
)
def test_values_that_cannot_work_are_refused_before_loading(parsers, argv, expected):
    with pytest.raises(UserError, match=expected):
        sf.check_sd_scripts_flags(parsers[False].parse_args(argv))


# --- DDP settings through accelerate ---------------------------------------------------------------------------


def test_ddp_flags_become_accelerate_kwargs_as_in_sd_scripts(parsers):
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    assert ddp_kwargs_handlers(parsers[False].parse_args([])) == []
    handlers = ddp_kwargs_handlers(
        parsers[False].parse_args(["--ddp_timeout", "90", "--ddp_gradient_as_bucket_view", "--ddp_static_graph"])
    )
    init = next(h for h in handlers if isinstance(h, InitProcessGroupKwargs))
    ddp = next(h for h in handlers if isinstance(h, DistributedDataParallelKwargs))
    assert init.timeout == datetime.timedelta(minutes=90)
    assert ddp.to_kwargs() == {"gradient_as_bucket_view": True, "static_graph": True}


def test_make_accelerator_hands_the_ddp_settings_to_accelerate(parsers, tmp_path):
    from library.training.run_setup import make_accelerator

    args = parsers[False].parse_args(["--output_dir", str(tmp_path), "--ddp_static_graph"])
    accelerator = make_accelerator(args)
    assert accelerator.ddp_handler is not None and accelerator.ddp_handler.static_graph is True
    assert accelerator.ddp_handler.gradient_as_bucket_view is False


def test_a_dynamo_backend_this_pytorch_lacks_is_refused_only_when_torch_compile_uses_it(parsers):
    from library.training.flag_rules import flag_problems

    args = parsers[False].parse_args(["--token_string", "x", "--dynamo_backend", "tensort"])
    assert not any("--dynamo_backend" in p for p in flag_problems(args, sdxl=False))
    args = parsers[False].parse_args(["--token_string", "x", "--dynamo_backend", "tensort", "--torch_compile"])
    assert any("--dynamo_backend tensort is not available" in p for p in flag_problems(args, sdxl=False))


def test_output_config_never_writes_the_hub_token(tmp_path):
    from library.training.config_file import parse_args_with_config

    target = tmp_path / "saved"
    with pytest.raises(SystemExit):
        parse_args_with_config(
            train_textual_inversion.setup_parser(),
            ["--config_file", str(target), "--output_config", "--huggingface_token", "hf_SECRET123", "--seed", "3"],
        )
    written = (tmp_path / "saved.toml").read_text()
    assert "seed = 3" in written and "hf_SECRET123" not in written
