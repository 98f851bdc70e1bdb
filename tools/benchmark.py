#!/usr/bin/env python
"""Benchmark our TI trainer: steady-state s/step, time to first step, peak memory and the compute floor, in one run.

Runs the real trainer (`library.training.loop.train`: the real dataset, buckets, latent cache, adapters, optimizer
and `training_step`) on a generated image set, the reference configuration of docs/performance.md: 3x 512x512, 2x 512x768,
2x 768x512, 1x 640x512, captions containing the token string, buckets 128..max(512, --resolution) step 64 at --resolution.
Steps are timed from one `training_step` call to the next (so a step includes data loading, the loss, backward,
the optimizer and the loop's bookkeeping); the timing wrapper only reads the clock.

The compute floor is measured afterwards in the same process, on the same models in the state the trainer left
them (dtype, device, autocast, checkpointing), for every bucket shape the timed steps used: text encoder(s)
forward from the input embeddings, UNet forward, backward to the encoder hidden states and on to the input
embeddings only (no weight gradients). step/floor near 1 means the trainer adds nothing to the model's compute.

    python tools/benchmark.py --model tiny-sd1 --steps 4 --warmup 1
    python tools/benchmark.py --compare_concepts      # two concepts in one run vs two runs, on the toy model
    python tools/make_random_model.py --arch sd15 --out /tmp/sd15 && \\
        python tools/benchmark.py --model /tmp/sd15 --mixed_precision bf16 --cache_latents --json sd15_bf16.json
Flags the benchmark does not know are passed to the trainer (e.g. --full_bf16, --clip_skip 2).
"""

from __future__ import annotations

import time

_PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from library.cli import run_main  # noqa: E402
from library.training.memory_estimate import peak_rss_bytes  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _PROCESS_START
TOKEN = "bnchtok"
IMAGE_SIZES = [(512, 512)] * 3 + [(512, 768)] * 2 + [(768, 512)] * 2 + [(640, 512)]  # (width, height)
TINY_MODELS = {"tiny-sd1": "sd1", "tiny-sd2": "sd2", "tiny-sdxl": "sdxl"}


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory or single file, or tiny-sd1 / tiny-sd2 / tiny-sdxl (built in-process); "
                        "required unless --compare_concepts")
    parser.add_argument("--compare_concepts", action="store_true",
                        help="instead: time two single-concept runs back to back and one run training both concepts, on the toy "
                             "model (fresh trainer processes; --steps per concept, default the demo's 500 here), and print the ratio")
    parser.add_argument("--repeats", type=int, default=1, help="--compare_concepts: runs of each kind (the median is reported)")
    parser.add_argument("--score_samples", type=int, default=0,
                        help="--compare_concepts: also score each embedding of the two-concept run with this many samples (concept recovery)")
    parser.add_argument("--sdxl", action="store_true", help="use the SDXL trainer (implied by tiny-sdxl)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--mixed_precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps after the warm-up (default 16)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first; the default, one epoch (8 steps at batch 1, 16 with --reg_images), lets "
                             "every bucket shape allocate its buffers and build its kernels once")
    parser.add_argument("--reg_images", action="store_true",
                        help="add the same 8 images as regularisation images, captioned without the token: half of each "
                             "epoch's batches cannot reach the vectors, and the trainer skips their backward pass")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--cache_latents", action="store_true")
    parser.add_argument("--floor_repeats", type=int, default=2, help="timed floor passes per bucket shape (after one untimed)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile the N-th timed step with torch.profiler and print the top costs")
    parser.add_argument("--workdir", default=None, help="where to write the images and outputs (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--label", default=None, help="a name for this case in the JSON")
    opts, extra = parser.parse_known_args(argv)
    if not opts.compare_concepts and opts.model is None:
        parser.error("--model is required (or --compare_concepts)")
    images_per_epoch = len(IMAGE_SIZES) * (2 if opts.reg_images else 1)
    opts.batches_per_epoch = max(1, math.ceil(images_per_epoch / opts.batch_size))  # bucket batches never mix sizes: a lower bound
    if opts.warmup is None:
        opts.warmup = opts.batches_per_epoch
    return opts, extra


# --- inputs ------------------------------------------------------------------------------------------------


def write_images(folder: Path, seed: int = 0, subject: str = f"{TOKEN}, girl") -> None:
    """The benchmark's 8 images (smooth colour fields plus noise, like photos to a JPEG/VAE) and captions."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (w, h) in enumerate(IMAGE_SIZES):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([np.sin(xx / (37 + 9 * i) + c) * np.cos(yy / (53 + 7 * c) + i) for c in range(3)], axis=-1)
        pixels = np.clip(127.5 + 90 * base + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:02d}.png")
        (folder / f"img_{i:02d}.txt").write_text(f"a photo of {subject}, standing, outdoors, detailed {i}")


def write_dataset_toml(root: Path, images: Path, resolution: int, batch_size: int, reg_images: Path | None = None) -> Path:
    config = root / "dataset.toml"
    text = (
        f"[general]\ncaption_extension = '.txt'\nenable_bucket = true\nmin_bucket_reso = 128\nmax_bucket_reso = {max(512, resolution)}\n"
        f"bucket_reso_steps = 64\n[[datasets]]\nresolution = {resolution}\nbatch_size = {batch_size}\n"
        f"[[datasets.subsets]]\nimage_dir = '{images.as_posix()}'\nnum_repeats = 1\n"
    )
    if reg_images is not None:
        text += f"[[datasets.subsets]]\nimage_dir = '{reg_images.as_posix()}'\nnum_repeats = 1\nis_reg = true\n"
    config.write_text(text)
    return config


def resolve_model(name: str, root: Path) -> tuple[str, bool | None]:
    """A path to train on; tiny-* models are written to `root` first. Second item: SDXL or None (unknown)."""
    if name in TINY_MODELS:
        from library.models.tiny import save_tiny_model

        family = TINY_MODELS[name]
        return str(save_tiny_model(family, root / name)), family == "sdxl"
    return name, None


def trainer_argv(opts: argparse.Namespace, model: str, config: Path, out: Path, extra: list[str]) -> list[str]:
    """BENCHMARKS.md's configuration: 4 vectors, init word girl, AdamW 5e-4 constant, seed 42, no sampling."""
    argv = [
        f"--pretrained_model_name_or_path={model}",
        f"--dataset_config={config}",
        f"--output_dir={out}",
        "--output_name=bench",
        f"--token_string={TOKEN}",
        "--init_word=girl",
        "--num_vectors_per_token=4",
        f"--max_train_steps={opts.warmup + opts.steps + 1}",  # +1: the last timed step ends where the next begins
        "--learning_rate=5e-4",
        "--lr_scheduler=constant",
        "--optimizer_type=AdamW",
        "--seed=42",
        f"--mixed_precision={opts.mixed_precision}",
        "--max_data_loader_n_workers=0",
    ]
    if opts.gradient_checkpointing:
        argv.append("--gradient_checkpointing")
    if opts.cache_latents:
        argv.append("--cache_latents")
    return argv + extra


# --- timing --------------------------------------------------------------------------------------------------


def _sync(device) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_bytes(device) -> dict:
    """Peak RSS of this process (its own, not a parent's: see peak_rss_bytes) and, on CUDA, peak allocated."""
    out = {"peak_rss_bytes": peak_rss_bytes()}
    if device is not None and torch.device(device).type == "cuda":
        out["peak_cuda_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
    return out


def current_rss_bytes() -> int | None:
    """Resident memory now (Linux: /proc/self/statm); None elsewhere."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def memory_now(device) -> int | None:
    """What grows if something leaks: allocated CUDA memory on a GPU, resident memory on a CPU."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return current_rss_bytes()


class StepRecorder:
    """Wraps `training_step`: records when each call starts, its batch's shape, and the objects it was given."""

    def __init__(self, original, profile_step: int | None = None):
        self.original = original
        self.starts: list[float] = []
        self.shapes: list[tuple] = []
        self.context: tuple | None = None
        self.batch_by_shape: dict[tuple, dict] = {}
        self.profile_step = profile_step
        self.profiler = None
        self.memory_at_start: list[int | None] = []  # memory_now() as each step begins
        self.with_backward: list[bool] = []  # False where the loop skips the backward (no trained token in the batch)
        self.setup_peak: dict | None = None  # peak memory before the first step: model load and latent caching
        self.last_reach = True

    def reaches_vectors(self, original):
        """Wraps the loop's test of whether a batch can reach the vectors (False: its backward is skipped)."""

        def wrapped(*args, **kwargs):
            self.last_reach = original(*args, **kwargs)
            return self.last_reach

        return wrapped

    def __call__(self, batch, models, family, text_encoders, settings, generators, accelerator, snr):
        _sync(accelerator.device)
        now = time.perf_counter()
        index = len(self.starts)
        if self.profiler is not None:  # the profiled step ended where this one begins
            self.profiler.__exit__(None, None, None)
            self.profiled, self.profiler = self.profiler, None
        if self.profile_step is not None and index == self.profile_step:
            self.profiler = torch.profiler.profile(activities=_profiler_activities(accelerator.device), record_shapes=False)
            self.profiler.__enter__()
        self.starts.append(now)
        self.memory_at_start.append(memory_now(accelerator.device))
        self.with_backward.append(self.last_reach)
        if self.setup_peak is None:
            self.setup_peak = peak_memory_bytes(accelerator.device)
        shape = _batch_shape(batch)
        self.shapes.append(shape)
        self.batch_by_shape.setdefault(shape, {k: v for k, v in batch.items()})
        if self.context is None:
            self.context = (models, family, text_encoders, settings, accelerator)
        return self.original(batch, models, family, text_encoders, settings, generators, accelerator, snr)


def _profiler_activities(device) -> list:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.device(device).type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return activities


def _batch_shape(batch: dict) -> tuple:
    if batch.get("latents") is not None:
        b, c, h, w = batch["latents"].shape
        return (b, c, h, w)
    b, _, h, w = batch["images"].shape
    return (b, 4, h // 8, w // 8)


def floor_pass(context, batch: dict, shape: tuple, timestep: int = 500) -> float:
    """Seconds for the model compute of one step: text encoders + UNet forward, backward to the inputs only."""
    from library.text_conditioning import _unwrapped

    models, family, text_encoders, settings, accelerator = context
    device = accelerator.device
    leaves = []

    def make_leaf(module, inputs, output):
        leaf = output.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf

    hooks = [_unwrapped(te).get_input_embeddings().register_forward_hook(make_leaf) for te in text_encoders]
    try:
        noisy = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device, models.unet.dtype)
        timesteps = torch.full((shape[0],), timestep, dtype=torch.long, device=device)
        _sync(device)
        start = time.perf_counter()
        with accelerator.autocast():
            conditioning = family.unet_conditioning(models.tokenizers, text_encoders, batch["captions"], batch,
                                                    **settings.conditioning.as_kwargs())
            conditioning["encoder_hidden_states"] = conditioning["encoder_hidden_states"].to(models.unet.dtype)
            prediction = models.unet(noisy, timesteps, **conditioning).sample
        prediction.float().square().mean().backward()
        _sync(device)
        seconds = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    assert leaves and all(leaf.grad is not None for leaf in leaves), "the floor's backward did not reach the input embeddings"
    return seconds


def measure_floor(recorder: StepRecorder, repeats: int) -> dict[tuple, float]:
    """Median floor seconds per bucket shape of the timed steps (one untimed pass first per shape)."""
    floors = {}
    for shape, batch in recorder.batch_by_shape.items():
        floor_pass(recorder.context, batch, shape)
        floors[shape] = statistics.median(floor_pass(recorder.context, batch, shape) for _ in range(max(1, repeats)))
    return floors


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --- the run ---------------------------------------------------------------------------------------------------


def run_benchmark(opts: argparse.Namespace, extra: list[str]) -> dict:
    from library.training import loop
    from library.training.parser import parse_training_args  # the scripts' own parser: the trainer sees exactly the CLI's flags

    with tempfile.TemporaryDirectory(prefix="ti_bench_") as tmp:
        root = Path(opts.workdir) if opts.workdir else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        images = root / "images"
        write_images(images)
        reg_images = None
        if opts.reg_images:
            reg_images = root / "reg_images"
            write_images(reg_images, seed=1, subject="girl")
        config = write_dataset_toml(root, images, opts.resolution, opts.batch_size, reg_images)
        model, is_sdxl = resolve_model(opts.model, root)
        sdxl = opts.sdxl or bool(is_sdxl)
        args = parse_training_args(trainer_argv(opts, model, config, root / "out", extra), sdxl=sdxl)

        profile_step = opts.warmup + opts.profile - 1 if opts.profile else None
        recorder = StepRecorder(loop.training_step, profile_step)
        load_before = load_average()
        reaches = loop.batch_reaches_vectors
        loop.training_step, loop.batch_reaches_vectors = recorder, recorder.reaches_vectors(reaches)
        try:
            started = time.perf_counter()
            loop.train(args, sdxl=sdxl)
        finally:
            loop.training_step, loop.batch_reaches_vectors = recorder.original, reaches
        if recorder.context is None:
            raise RuntimeError("the trainer ran no step")
        device = recorder.context[4].device
        memory = peak_memory_bytes(device)

        starts = recorder.starts
        durations = [b - a for a, b in zip(starts, starts[1:])]
        timed = list(range(opts.warmup, len(durations)))
        if not timed:
            raise RuntimeError(f"only {len(durations)} step(s) could be timed; raise --steps")
        step_times = [durations[i] for i in timed]
        floors = measure_floor(recorder, opts.floor_repeats)
        # the floor is a full step's compute: compare it with the steps that ran their backward
        full = [i for i in timed if recorder.with_backward[i]] or timed
        skipped = [durations[i] for i in timed if not recorder.with_backward[i]]
        ratios = [durations[i] / floors[recorder.shapes[i]] for i in full]
        floor_per_step = [floors[recorder.shapes[i]] for i in full]
        load_after = load_average()
        growth = memory_growth(recorder.memory_at_start, opts.warmup)

        result = {
            "label": opts.label,
            "model": opts.model,
            "sdxl": sdxl,
            "device": str(device),
            "mixed_precision": opts.mixed_precision,
            "resolution": opts.resolution,
            "batch_size": opts.batch_size,
            "gradient_checkpointing": opts.gradient_checkpointing,
            "cache_latents": opts.cache_latents,
            "extra_flags": extra,
            "torch_threads": torch.get_num_threads(),
            "warmup_steps": opts.warmup,
            "timed_steps": len(step_times),
            "step_s_median": statistics.median(step_times),
            "step_s_min": min(step_times),
            "step_s_max": max(step_times),
            "step_s_all": step_times,
            "batches_per_epoch": opts.batches_per_epoch,
            "step_s_median_with_backward": statistics.median(durations[i] for i in full),
            "skipped_backward_steps": len(skipped),
            "step_s_median_skipped_backward": statistics.median(skipped) if skipped else None,
            "floor_s_median": statistics.median(floor_per_step),
            "floor_s_by_shape": {"x".join(map(str, shape)): s for shape, s in floors.items()},
            "step_over_floor_median": statistics.median(ratios),
            "step_over_floor_all": ratios,
            "import_s": IMPORT_SECONDS,
            "setup_s": starts[0] - started,  # model load, token setup, dataset, latent caching
            "time_to_first_step_s": starts[1] - started,  # ... and the first step itself
            "first_step_s": durations[0],
            "load_average_before": load_before,
            "load_average_after": load_after,
            **growth,
            **memory,
            "setup_peak_rss_bytes": recorder.setup_peak["peak_rss_bytes"],
        }
        if getattr(recorder, "profiled", None) is not None:
            result["profile_top"] = profile_rows(recorder.profiled, torch.device(device).type == "cuda")
    return result


def memory_growth(samples: list[int | None], warmup: int) -> dict:
    """Memory at the first timed step and at the last step: steady state means no growth across epochs."""
    timed = [m for m in samples[warmup:] if m is not None]
    if len(timed) < 2:
        return {}
    return {"memory_first_timed_step_bytes": timed[0], "memory_last_step_bytes": timed[-1],
            "memory_max_timed_bytes": max(timed), "memory_growth_bytes": timed[-1] - timed[0],
            "memory_at_step_start_bytes": samples}


def profile_rows(prof, cuda: bool, top: int = 15) -> list[dict]:
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events) or 1
    return [{"op": e.key, "self_ms": getattr(e, key) / 1000, "share": getattr(e, key) / total, "calls": e.count} for e in events[:top]]


def summary_lines(r: dict) -> list[str]:
    gib = 1024**3
    lines = [
        f"case: {r['label'] or r['model']}  {r['mixed_precision']}  {r['resolution']}px  batch {r['batch_size']}  device {r['device']}"
        f"{'  checkpointing' if r['gradient_checkpointing'] else ''}{'  cached latents' if r['cache_latents'] else ''}",
        f"steady state: {r['step_s_median']:.3f} s/step (min {r['step_s_min']:.3f}, max {r['step_s_max']:.3f}, {r['timed_steps']} steps)",
        *([f"  {r['timed_steps'] - r['skipped_backward_steps']} steps with a backward: {r['step_s_median_with_backward']:.3f} s; "
           f"{r['skipped_backward_steps']} regularisation steps (no trained token, backward skipped): {r['step_s_median_skipped_backward']:.3f} s"]
          if r.get("skipped_backward_steps") else []),
        f"compute floor: {r['floor_s_median']:.3f} s   step/floor: {r['step_over_floor_median']:.3f}",
        f"time to first step: {r['time_to_first_step_s']:.1f} s (setup {r['setup_s']:.1f} s + first step {r['first_step_s']:.1f} s; imports {r['import_s']:.1f} s before)",
        f"peak RSS: {r['peak_rss_bytes'] / gib:.2f} GiB (before the first step: {r['setup_peak_rss_bytes'] / gib:.2f} GiB)" + (f"   peak CUDA allocated: {r['peak_cuda_allocated_bytes'] / gib:.2f} GiB" if "peak_cuda_allocated_bytes" in r else ""),
        f"load average: {r['load_average_before']} -> {r['load_average_after']}",
    ]
    if "memory_growth_bytes" in r:
        mib = 1024**2
        kind = "CUDA allocated" if r["device"].startswith("cuda") else "RSS"
        lines.insert(-1, f"{kind} at the first timed step {r['memory_first_timed_step_bytes'] / mib:.0f} MiB, at the last "
                         f"{r['memory_last_step_bytes'] / mib:.0f} MiB (growth {r['memory_growth_bytes'] / mib:+.1f} MiB over "
                         f"{r['timed_steps']} steps, {r['timed_steps'] / r['batches_per_epoch']:.0f} epochs)")
        period = r["batches_per_epoch"]
        every = "at the start of each epoch" if r["batch_size"] == 1 else f"every {period} steps"
        marks = [m for m in r["memory_at_step_start_bytes"][::period] if m is not None]
        lines.insert(-1, f"{kind} {every}: " + ", ".join(f"{m / mib:.0f}" for m in marks) + " MiB")
    for row in r.get("profile_top", []):
        lines.append(f"  {row['self_ms']:9.1f} ms  {100 * row['share']:5.1f}%  x{row['calls']:<5d} {row['op']}")
    return lines


def compare_concepts(opts: argparse.Namespace) -> dict:
    from library.toyworld.concept_benchmark import compare_concepts, summary_lines as concept_lines
    from library.toyworld.demo_data import DEMO_STEPS

    with tempfile.TemporaryDirectory(prefix="ti_bench_concepts_") as tmp:
        root = Path(opts.workdir) if opts.workdir else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        result = compare_concepts(root, steps=opts.steps or DEMO_STEPS, repeats=opts.repeats, score_samples=opts.score_samples)
    print("\n".join(concept_lines(result)))
    return result


def main(argv: list[str] | None = None) -> None:
    opts, extra = parse_args(argv)
    if opts.compare_concepts:
        result = compare_concepts(opts)
    else:
        opts.steps = opts.steps or 16
        if opts.model in TINY_MODELS and TINY_MODELS[opts.model] == "sdxl":
            opts.sdxl = True
        result = run_benchmark(opts, extra)
        print("\n".join(summary_lines(result)))
    if opts.json:
        from library.atomic import atomic_path

        with atomic_path(Path(opts.json)) as tmp:
            tmp.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(run_main(main))
