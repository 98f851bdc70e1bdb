#!/usr/bin/env python
"""Device check: the GPU paths (fp16 + loss scaling, xformers, bf16, 8-bit AdamW, SDXL checkpointing, DDP) measured in one go.

On a CUDA machine every case trains a full-size random-weight model (tools/make_random_model.py, offline) through
tools/benchmark.py in its own process, and reports s/step, step/floor (the benchmark's compute floor) and peak VRAM
(`torch.cuda.max_memory_allocated`), against the targets of docs/performance.md. On a CPU the same matrix runs on the
tiny models in seconds, so CI proves the script itself works; cases that need CUDA, a package or two GPUs are skipped
with the reason. Writes one JSON and a Markdown table to paste into docs/performance.md.

    python tools/device_check.py --out device_check          # or: make device-check
    python tools/device_check.py --out /tmp/dc --only sd15-fp16-sdpa
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from library.cli import run_main  # noqa: E402

GIB = 1024**3
FLOOR_TARGET = 1.10  # every case: s/step <= 1.10 x its compute floor


@dataclass(frozen=True)
class Case:
    name: str
    arch: str  # tools/make_random_model.py --arch on CUDA; the tiny model of the same family on a CPU
    resolution: int  # on CUDA; the tiny models train at 128 px
    mixed_precision: str
    flags: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # "cuda", "xformers", "bitsandbytes", "2gpus"
    vram_target_gib: float | None = None
    processes: int = 1


CASES = (
    Case("sd15-fp16-sdpa", "sd15", 512, "fp16", ("--sdpa",), vram_target_gib=6.0),
    Case("sd15-fp16-xformers", "sd15", 512, "fp16", ("--xformers",), needs=("cuda", "xformers"), vram_target_gib=6.0),
    Case("sd15-bf16", "sd15", 512, "bf16"),
    Case("sd15-fp16-adamw8bit", "sd15", 512, "fp16", ("--optimizer_type=AdamW8bit",), needs=("cuda", "bitsandbytes"), vram_target_gib=6.0),
    Case("sdxl-bf16-checkpointing", "sdxl", 1024, "bf16", ("--gradient_checkpointing",), vram_target_gib=12.0),
    Case("sdxl-fp16-no_half_vae", "sdxl", 1024, "fp16", ("--no_half_vae",)),
    Case("sd15-fp16-ddp2", "sd15", 512, "fp16", (), needs=("cuda", "2gpus"), processes=2),
)
TINY = {"sd15": "tiny-sd1", "sdxl": "tiny-sdxl"}


@dataclass
class Row:
    case: str
    model: str
    resolution: int
    mixed_precision: str
    flags: list[str]
    status: str = "skipped"  # ok / skipped / failed
    reason: str = ""
    s_per_step: float | None = None
    step_over_floor: float | None = None
    peak_gib: float | None = None
    peak_kind: str = ""
    vram_target_gib: float | None = None
    within_targets: bool | None = None
    details: dict = field(default_factory=dict)


def skip_reason(case: Case, cuda: bool, gpus: int) -> str | None:
    """Why this machine cannot run `case`, or None."""
    for need in case.needs:
        if need == "cuda" and not cuda:
            return "needs a CUDA GPU"
        if need == "2gpus" and gpus < 2:
            return f"needs two visible CUDA GPUs ({gpus} visible)"
        if need in ("xformers", "bitsandbytes") and importlib.util.find_spec(need) is None:
            return f"{need} is not installed (pip install {need})"
    return None


def model_for(case: Case, cuda: bool, models_dir: Path) -> str:
    """A full-size random model on CUDA (made once per architecture), else the tiny model's benchmark name."""
    if not cuda:
        return TINY[case.arch]
    path = models_dir / f"{case.arch}_random"
    if not (path / "model_index.json").is_file():
        subprocess.run([sys.executable, str(REPO / "tools" / "make_random_model.py"), "--arch", case.arch, "--out", str(path)], check=True)
    return str(path)


def benchmark_command(case: Case, model: str, cuda: bool, json_path: Path, work: Path, steps: int, warmup: int) -> list[str]:
    resolution = case.resolution if cuda else 128
    bench = [str(REPO / "tools" / "benchmark.py"), "--model", model, "--resolution", str(resolution), "--mixed_precision",
             case.mixed_precision, "--steps", str(steps), "--warmup", str(warmup), "--cache_latents", "--floor_repeats", "1",
             "--workdir", str(work), "--json", str(json_path), "--label", case.name]
    if case.arch == "sdxl":
        bench.append("--sdxl")
    if "--gradient_checkpointing" in case.flags:
        bench.append("--gradient_checkpointing")
    bench += [f for f in case.flags if f != "--gradient_checkpointing"]
    if case.processes > 1:
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={case.processes}", *bench]
    return [sys.executable, *bench]


def run_case(case: Case, cuda: bool, gpus: int, out: Path, steps: int, warmup: int) -> Row:
    row = Row(case.name, case.arch if cuda else TINY[case.arch], case.resolution if cuda else 128, case.mixed_precision,
              list(case.flags), vram_target_gib=case.vram_target_gib if cuda else None)
    reason = skip_reason(case, cuda, gpus)
    if reason:
        row.reason = reason
        return row
    json_path = out / "cases" / f"{case.name}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    command = benchmark_command(case, model_for(case, cuda, out / "models"), cuda, json_path, out / "work" / case.name, steps, warmup)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    row.details["wall_s"] = round(time.perf_counter() - started, 1)
    if done.returncode != 0 or not json_path.is_file():
        row.status = "failed"
        row.reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return row
    result = json.loads(json_path.read_text())
    row.status = "ok"
    row.s_per_step = result["step_s_median"]
    row.step_over_floor = result["step_over_floor_median"]
    if "peak_cuda_allocated_bytes" in result:
        row.peak_gib, row.peak_kind = result["peak_cuda_allocated_bytes"] / GIB, "VRAM (max_memory_allocated)"
    else:
        row.peak_gib, row.peak_kind = result["peak_rss_bytes"] / GIB, "peak RSS (CPU)"
    if cuda:
        row.within_targets = row.step_over_floor <= FLOOR_TARGET and (case.vram_target_gib is None or row.peak_gib <= case.vram_target_gib)
    return row


def markdown_table(rows: list[Row], device: str) -> str:
    lines = [
        f"Device check on {device}",
        "",
        "| case | model | px | precision | flags | s/step | step/floor | peak GiB | target | result |",
        "|---|---|---:|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        target = f"<= {r.vram_target_gib:g} GiB, <= {FLOOR_TARGET}x floor" if r.vram_target_gib else (f"<= {FLOOR_TARGET}x floor" if r.within_targets is not None else "-")
        if r.status == "ok":
            result = "ok" if r.within_targets is None else ("meets target" if r.within_targets else "MISSES target")
            numbers = f"{r.s_per_step:.3f} | {r.step_over_floor:.2f} | {r.peak_gib:.2f}"
        else:
            result = f"{r.status}: {r.reason}"
            numbers = "- | - | -"
        lines.append(f"| {r.case} | {r.model} | {r.resolution} | {r.mixed_precision} | {' '.join(r.flags) or '-'} | {numbers} | {target} | {result} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="device_check", help="folder for device_check.json, device_check.md, models and work files")
    parser.add_argument("--only", nargs="*", default=None, metavar="CASE", help=f"run only these cases ({', '.join(c.name for c in CASES)})")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per case (default 6 on CUDA, 2 on a CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 on CUDA, 1 on a CPU)")
    opts = parser.parse_args(argv)
    unknown = sorted(set(opts.only or []) - {c.name for c in CASES})
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(c.name for c in CASES)}")
    return opts


def main(argv: list[str] | None = None) -> dict:
    opts = parse_args(argv)
    cuda = torch.cuda.is_available()
    gpus = torch.cuda.device_count() if cuda else 0
    device = torch.cuda.get_device_name(0) if cuda else "CPU (tiny models; CUDA-only cases skipped)"
    steps = opts.steps or (6 if cuda else 2)
    warmup = opts.warmup or (3 if cuda else 1)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in CASES:
        if opts.only is not None and case.name not in opts.only:
            continue
        row = run_case(case, cuda, gpus, out, steps, warmup)
        print(f"{row.case}: {row.status}" + (f" ({row.reason})" if row.reason else f", {row.s_per_step:.3f} s/step, "
              f"{row.step_over_floor:.2f}x floor, peak {row.peak_gib:.2f} GiB"), flush=True)
        rows.append(row)
    report = {"device": device, "cuda": cuda, "gpus": gpus, "torch": torch.__version__, "steps": steps, "warmup": warmup,
              "floor_target": FLOOR_TARGET, "cases": [asdict(r) for r in rows]}
    from library.atomic import atomic_path

    with atomic_path(out / "device_check.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    table = markdown_table(rows, device)
    with atomic_path(out / "device_check.md") as tmp:
        tmp.write_text(table)
    print(table)
    return report


if __name__ == "__main__":
    sys.exit(run_main(main))
