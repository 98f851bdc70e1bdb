#!/usr/bin/env python
"""The README's main job: train a Textual Inversion embedding on the embedded toy model, on a CPU, in minutes.

Generates a handful of images of the toy world's held-out concept (a shape/color pair the toy model never saw),
captions them with the token string, and runs train_textual_inversion.py on them with sample images and a
loss chart. Without the shipped toy model (a source checkout from before it existed) a tiny random model is
built on the fly instead: the run is then a smoke test, not a demonstration of learning.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from library.cli import run_main  # noqa: E402

TOKEN = "toyxstar"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="folder for the images, the embedding, samples and the loss chart")
    parser.add_argument("--images", type=int, default=8, help="training images to generate")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the toy model's tuned value)")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def toy_model_dir() -> Path | None:
    path = REPO / "library" / "resources" / "toy_model"
    return path if (path / "model_index.json").is_file() else None


def write_dataset(out: Path, count: int, seed: int) -> Path:
    """Images of the held-out concept captioned with the token string, plus a dataset TOML."""
    from library.toyworld.world import HELD_OUT, caption, make_dataset

    images = out / "images"
    make_dataset(images, count, seed=seed, include=[HELD_OUT], caption_fn=lambda scene: caption(scene, subject=TOKEN))
    config = out / "dataset.toml"
    config.write_text(
        "[general]\ncaption_extension = \".txt\"\n\n[[datasets]]\nresolution = 64\nbatch_size = 2\n\n"
        f"  [[datasets.subsets]]\n  image_dir = '{images.as_posix()}'\n  num_repeats = 1\n"
    )
    return config


def write_sample_prompts(out: Path) -> Path:
    path = out / "sample_prompts.txt"
    path.write_text(
        f"a {TOKEN} on a white background --w 64 --h 64 --d 1 --s 20 --l 4\n"
        f"a {TOKEN} on a black background --w 64 --h 64 --d 2 --s 20 --l 4\n"
        "a star on a white background --w 64 --h 64 --d 1 --s 20 --l 4\n"
    )
    return path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = toy_model_dir()
    steps = args.steps
    if model is None:
        from library.models.tiny import save_tiny_model

        model = save_tiny_model("sd1", out / "tiny_model")
        print("note: the toy model is not in this checkout; training a tiny random model (a smoke test)")
        steps = steps or 20
    steps = steps or 300
    config = write_dataset(out, args.images, args.seed)
    prompts = write_sample_prompts(out)

    from train_textual_inversion import main as train_main

    started = time.time()
    train_main([
        f"--pretrained_model_name_or_path={model}",
        f"--dataset_config={config}",
        f"--output_dir={out}",
        "--output_name=toyxstar",
        f"--token_string={TOKEN}",
        "--init_word=star",
        "--num_vectors_per_token=2",
        f"--max_train_steps={steps}",
        "--learning_rate=5e-3",
        "--optimizer_type=AdamW",
        "--lr_scheduler=constant",
        "--cache_latents",
        f"--seed={args.seed}",
        f"--sample_prompts={prompts}",
        f"--sample_every_n_steps={max(1, steps // 3)}",
        "--sample_at_first",
        "--max_data_loader_n_workers=0",
    ])
    print(f"done in {time.time() - started:.0f} s: embedding {out / 'toyxstar.safetensors'}, samples in {out / 'sample'}, loss chart {out / 'toyxstar_loss.png'}")


if __name__ == "__main__":
    sys.exit(run_main(main))
