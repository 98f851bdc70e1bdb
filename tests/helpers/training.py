"""Small real datasets and argument lists for end-to-end trainer tests."""

from __future__ import annotations

from pathlib import Path

from library.toyworld.world import HELD_OUT, caption, make_dataset

TOKEN = "toyxstar"


def make_ti_dataset(root: Path, n: int = 4, *, token: str = TOKEN, seed: int = 1, batch_size: int = 2, resolution: int = 64) -> Path:
    """`n` toy-world images captioned with `token`, and a dataset TOML for them; returns the TOML path."""
    images = root / "images"
    make_dataset(images, n, seed=seed, include=[HELD_OUT], caption_fn=lambda scene: caption(scene, subject=token))
    config = root / "dataset.toml"
    config.write_text(
        f"[general]\ncaption_extension = '.txt'\n[[datasets]]\nresolution = {resolution}\nbatch_size = {batch_size}\n"
        f"[[datasets.subsets]]\nimage_dir = '{images.as_posix()}'\n"
    )
    return config


def train_argv(model: Path, config: Path, out: Path, *extra: str, steps: int = 4) -> list[str]:
    return [
        f"--pretrained_model_name_or_path={model}",
        f"--dataset_config={config}",
        f"--output_dir={out}",
        "--output_name=ti",
        f"--token_string={TOKEN}",
        "--init_word=star",
        "--num_vectors_per_token=2",
        f"--max_train_steps={steps}",
        "--learning_rate=1e-2",
        "--seed=7",
        "--max_data_loader_n_workers=0",
        *extra,
    ]
