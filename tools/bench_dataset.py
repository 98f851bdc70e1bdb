"""Benchmark: scan + validate + bucket a folder of many images (default 10,000) the way training does.

The images are real (PNG, JPEG and WebP of varied sizes, each with a caption file). To write them fast, one file
is encoded per distinct (size, format) and its bytes copied under many names.

    python tools/bench_dataset.py                 # 10,000 images in a temporary folder
    python tools/bench_dataset.py --count 2000 --keep /tmp/bench_images
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from library.dataset.group import build_dataset_group  # noqa: E402
from library.dataset.params import DatasetGroupParams, DatasetParams, SubsetParams  # noqa: E402


def encoded(size: tuple[int, int], fmt: str, color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def write_images(folder: Path, count: int, seed: int = 0) -> float:
    """`count` images of varied sizes and formats with caption files; returns seconds taken."""
    start = time.perf_counter()
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    formats = [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp")]
    sizes = [(rng.randrange(200, 2000), rng.randrange(200, 2000)) for _ in range(40)]
    blobs = {}
    for i in range(count):
        size = sizes[i % len(sizes)]
        fmt, ext = formats[i % len(formats)]
        if (size, fmt) not in blobs:
            blobs[(size, fmt)] = encoded(size, fmt, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        (folder / f"img_{i:05d}{ext}").write_bytes(blobs[(size, fmt)])
        (folder / f"img_{i:05d}.txt").write_text(f"sks, tag{i % 17}, tag{i % 5}")
    return time.perf_counter() - start


def bench(folder: Path, resolution: int) -> dict:
    params = DatasetGroupParams(
        datasets=[
            DatasetParams(
                subsets=[SubsetParams(image_dir=str(folder), caption_extension=".txt", shuffle_caption=True)],
                resolution=(resolution, resolution),
                batch_size=4,
                enable_bucket=True,
                min_bucket_reso=256,
                max_bucket_reso=1024,
                bucket_reso_steps=64,
            )
        ],
        source="bench",
    )
    start = time.perf_counter()
    group = build_dataset_group(params, seed=0)
    build = time.perf_counter() - start

    start = time.perf_counter()
    captions = sum(1 for _ in group.iter_captions())
    caption_pass = time.perf_counter() - start

    start = time.perf_counter()
    n_batches = min(10, len(group))
    for i in range(n_batches):
        group[i]
    load = (time.perf_counter() - start) / max(1, n_batches)
    return dict(
        images=len(group.records),
        buckets=len(group.parts[0].buckets),
        batches=len(group),
        build_s=build,
        captions=captions,
        caption_pass_s=caption_pass,
        batch_load_s=load,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="number of images to generate")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--keep", type=Path, default=None, help="write the images here and keep them")
    args = parser.parse_args(argv)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_dataset_")) / "images"
    try:
        if not (folder.is_dir() and any(folder.iterdir())):
            print(f"writing {args.count} images to {folder} ... {write_images(folder, args.count):.1f} s")
        result = bench(folder, args.resolution)
    finally:
        if args.keep is None:
            shutil.rmtree(folder.parent, ignore_errors=True)
    print(
        f"scan + validate + bucket: {result['images']} images -> {result['buckets']} buckets, "
        f"{result['batches']} batches in {result['build_s']:.2f} s "
        f"({result['build_s'] / result['images'] * 1e6:.0f} us/image)"
    )
    print(f"caption pass (iter_captions): {result['caption_pass_s']:.2f} s")
    print(f"one batch of 4 (decode, resize, crop): {result['batch_load_s'] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
