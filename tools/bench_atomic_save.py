#!/usr/bin/env python
"""What durability costs per save: time an embedding save and a state-folder save with and without fsync.

    python tools/bench_atomic_save.py --out_dir /path/on/the/disk/you/train/to --repeats 50

library/atomic.py fsyncs the temp file before renaming it and the folder after (so a power loss cannot leave an
empty newest embedding). This times the trainer's own writers (save_embedding, save_state) both ways on the folder
given, and prints the median and 90th-percentile milliseconds per save. Run it on the disk a run writes to: the
cost is the disk's flush latency (near zero on tmpfs, about a millisecond on an NVMe SSD, more on network disks).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from library.cli import run_main  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out_dir", type=str, default=None, help="folder to save into (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=30, help="saves timed per writer and mode (default 30)")
    parser.add_argument("--num_vectors", type=int, default=8, help="vectors per slot of the saved embedding (default 8)")
    return parser.parse_args(argv)


def _time_saves(save, repeats: int) -> list[float]:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        save(i)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main(argv: list[str] | None = None) -> None:
    import torch

    from library import atomic
    from library.embeddings import save_embedding
    from library.errors import UserError
    from library.training.state import Progress, save_state

    opts = parse_args(argv)
    if opts.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {opts.repeats}")
    # SDXL-sized: both encoders' vectors
    vectors = {"clip_l": torch.randn(opts.num_vectors, 768), "clip_g": torch.randn(opts.num_vectors, 1280)}
    params = [torch.nn.Parameter(v.clone()) for v in vectors.values()]
    optimizer = torch.optim.AdamW(params)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with tempfile.TemporaryDirectory(dir=opts.out_dir) as tmp:
        folder = Path(tmp)
        writers = {
            "embedding": lambda i: save_embedding(folder / f"e{i % 3}.safetensors", vectors, token="x", step=i),
            "state folder": lambda i: save_state(folder / f"s{i % 3}-state", vectors, optimizer, scheduler, Progress(global_step=i)),
        }
        real_fsync = atomic.fsync_path
        results = {}
        for mode in ("no fsync", "fsync"):
            atomic.fsync_path = real_fsync if mode == "fsync" else (lambda path: None)
            try:
                for name, save in writers.items():
                    save(0)  # warm-up: imports, first file creation
                    results[(name, mode)] = _time_saves(save, opts.repeats)
            finally:
                atomic.fsync_path = real_fsync
    where = opts.out_dir or tempfile.gettempdir()
    print(f"saves into {where}, {opts.repeats} each; milliseconds per save (median / p90)")
    for name in writers:
        row = []
        for mode in ("no fsync", "fsync"):
            times = sorted(results[(name, mode)])
            row.append(f"{mode}: {statistics.median(times):7.2f} / {times[int(0.9 * (len(times) - 1))]:7.2f}")
        added = statistics.median(results[(name, "fsync")]) - statistics.median(results[(name, "no fsync")])
        print(f"  {name:13s} {'   '.join(row)}   added by fsync: {added:+.2f} ms")


if __name__ == "__main__":
    sys.exit(run_main(main))
