"""End-to-end: sd-scripts' saving, metadata, logging and fp8 flags in one tiny SD 1.x training run."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import train_textual_inversion
from library.training.config_file import parse_args_with_config
from library.models.fp8_storage import FP8_DTYPE
from library.training.loop import train
from tests.helpers.logging_state import root_logger_restored
from tests.helpers.training import TOKEN, make_ti_dataset, train_argv

pytestmark = pytest.mark.training  # runs the trainer end to end; `make test-fast` leaves it out


@pytest.fixture
def restore_logging():
    with root_logger_restored():
        yield


def test_sd_scripts_flags_shape_the_run_and_its_files(tiny_model_dir, tmp_path, restore_logging):
    dataset = make_ti_dataset(tmp_path / "data", n=2)  # 2 images, batch 2: 1 step per epoch
    thumb = tmp_path / "thumb.png"
    thumb.write_bytes(b"\x89PNG\r\n\x1a\n")
    log_file = tmp_path / "train.log"
    out = tmp_path / "out"
    argv = train_argv(
        tiny_model_dir("sd1"), dataset, out,
        "--save_every_n_epochs=3", "--save_n_epoch_ratio=4",  # 4 epochs / 4 -> every epoch, overriding 3
        "--save_state", "--save_last_n_epochs_state=1",  # embeddings all kept, only the newest epoch state
        "--metadata_usage_hint=use toyxstar", f"--metadata_thumbnail={thumb}", "--metadata_trigger_phrase=toyxstar star",
        "--metadata_is_negative_embedding=false", "--metadata_author=me",
        "--fp8_base", "--disable_mmap_load_safetensors", "--ddp_static_graph",
        f"--console_log_file={log_file}", "--console_log_simple", "--console_log_level=INFO",
        steps=4,
    )
    result = train(parse_args_with_config(train_textual_inversion.setup_parser(), argv), sdxl=False)

    assert result.global_step == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        "ti-000001.safetensors", "ti-000002.safetensors", "ti-000003.safetensors", "ti.safetensors",
    ]
    assert sorted(p.name for p in out.glob("*-state")) == ["ti-000003-state", "ti-state"]  # and the final state

    with safe_open(str(out / "ti.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["modelspec.usage_hint"] == "use toyxstar"
    assert meta["modelspec.thumbnail"] == "data:image/png;base64,iVBORw0KGgo="
    assert meta["modelspec.trigger_phrase"] == "toyxstar star"
    assert meta["modelspec.is_negative_embedding"] == "false"
    assert meta["modelspec.author"] == "me"
    assert meta["ti_token_string"] == TOKEN

    # the frozen U-Net trained in float8 storage
    linears = [m for m in result.models.unet.modules() if type(m) is torch.nn.Linear]
    assert linears and all(m.weight.dtype == FP8_DTYPE for m in linears)

    # the log went to the file, without level prefixes
    text = log_file.read_text()
    assert "saved embedding:" in text and "INFO:" not in text


def test_sdxl_trains_and_samples_with_a_float8_unet(tiny_model_dir, tmp_path):
    dataset = make_ti_dataset(tmp_path / "data", n=2)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"a {TOKEN} --w 64 --h 64 --s 2 --d 1\n")
    out = tmp_path / "out"
    argv = train_argv(tiny_model_dir("sdxl"), dataset, out, "--fp8_base", f"--sample_prompts={prompts}", "--sample_at_first",
                      "--metadata_is_negative_embedding=true", steps=2)
    result = train(parse_args_with_config(train_textual_inversion.setup_parser(sdxl=True), argv), sdxl=True)
    assert result.global_step == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    assert len(list((out / "sample").glob("*.png"))) == 1  # --sample_at_first: the sampler ran the float8 U-Net
    with safe_open(str(out / "ti.safetensors"), "pt") as f:
        assert f.metadata()["modelspec.is_negative_embedding"] == "true"
        assert set(f.keys()) == {"clip_l", "clip_g"}


DDP_PROBE = """
import sys
import torch
import train_textual_inversion
from library.training.run_setup import make_accelerator

args = train_textual_inversion.setup_parser().parse_args(sys.argv[1:])
accelerator = make_accelerator(args)
model = accelerator.prepare(torch.nn.Linear(2, 2))
model(torch.ones(1, 2)).sum().backward()
if accelerator.is_main_process:
    print(type(model).__name__, model.static_graph, model.gradient_as_bucket_view, accelerator.num_processes)
"""


def test_ddp_flags_reach_the_distributed_data_parallel_wrapper(tmp_path):
    # two CPU processes (gloo), as `accelerate launch --multi_gpu` starts them through torchrun
    repo = Path(__file__).resolve().parents[1]
    probe = tmp_path / "probe.py"
    probe.write_text(DDP_PROBE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", str(probe),
           f"--output_dir={tmp_path}", "--ddp_static_graph", "--ddp_gradient_as_bucket_view", "--ddp_timeout=5"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=repo)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DistributedDataParallel True True 2" in done.stdout
