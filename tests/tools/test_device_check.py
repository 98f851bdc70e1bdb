"""The device check runs its matrix on a CPU with the tiny models (CUDA-only cases skipped with the reason), and writes
its JSON and Markdown table. No timing is asserted."""

import json

import pytest
import torch

from tests.helpers.tools import load_tool

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA the device check trains full-size models (minutes)")


@pytest.mark.training  # the device check runs the benchmark, which runs the trainer
def test_one_case_runs_and_the_cuda_only_cases_are_skipped_with_their_reason(tmp_path):
    check = load_tool("device_check")
    report = check.main(["--out", str(tmp_path), "--only", "sd15-fp16-sdpa", "sd15-fp16-xformers", "sd15-fp16-adamw8bit", "sd15-fp16-ddp2"])
    rows = {r["case"]: r for r in report["cases"]}
    ok = rows["sd15-fp16-sdpa"]
    assert ok["status"] == "ok" and ok["model"] == "tiny-sd1" and ok["s_per_step"] > 0 and ok["step_over_floor"] > 0 and ok["peak_gib"] > 0
    assert ok["peak_kind"] == "peak RSS (CPU)" and ok["within_targets"] is None  # the GPU targets are not judged on a CPU
    for name in ("sd15-fp16-xformers", "sd15-fp16-adamw8bit", "sd15-fp16-ddp2"):
        assert rows[name]["status"] == "skipped" and rows[name]["reason"] == "needs a CUDA GPU"
    assert json.loads((tmp_path / "device_check.json").read_text())["cases"] == report["cases"]
    table = (tmp_path / "device_check.md").read_text()
    assert "| sd15-fp16-sdpa | tiny-sd1 | 128 | fp16 | --sdpa |" in table and "skipped: needs a CUDA GPU" in table


@pytest.mark.slow
@pytest.mark.training
def test_the_whole_cpu_matrix_runs(tmp_path):
    report = load_tool("device_check").main(["--out", str(tmp_path)])
    statuses = {r["case"]: r["status"] for r in report["cases"]}
    assert statuses == {"sd15-fp16-sdpa": "ok", "sd15-fp16-xformers": "skipped", "sd15-bf16": "ok", "sd15-fp16-adamw8bit": "skipped",
                        "sdxl-bf16-checkpointing": "ok", "sdxl-fp16-no_half_vae": "ok", "sd15-fp16-ddp2": "skipped"}


def test_skip_reasons_name_what_is_missing():
    check = load_tool("device_check")
    ddp = next(c for c in check.CASES if c.processes == 2)
    assert check.skip_reason(ddp, cuda=True, gpus=1) == "needs two visible CUDA GPUs (1 visible)"
    xformers = next(c for c in check.CASES if "xformers" in c.needs)
    assert check.skip_reason(xformers, cuda=False, gpus=0) == "needs a CUDA GPU"
