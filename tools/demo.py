#!/usr/bin/env python
"""The README's main job: train a Textual Inversion embedding on the embedded toy model, on a CPU, in minutes.

Generates a handful of images of the toy world's held-out concept (a shape/color pair the toy model never saw),
captions them with the token string, and runs train_textual_inversion.py on them with sample images and a
loss chart. docs/quickstart.md shows the run; tools/concept_recovery.py scores the embedding.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from library.cli import run_main  # noqa: E402
from library.errors import UserError  # noqa: E402
from library.toyworld.demo_data import CROSS, DEMO_STEPS, STAR, training_argv, write_config, write_images  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="folder for the images, the embedding, samples and the loss chart")
    parser.add_argument("--images", type=int, default=8, help="training images to generate")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concepts", type=int, choices=(1, 2), default=1,
                        help="2: also train a blue cross (toyxcross, another pair the toy model never saw) in the same run, "
                             "from its own images: two embeddings, one model load")
    return parser.parse_args(argv)


def toy_model_dir() -> Path:
    """The shipped toy model; a clear error if this checkout lacks it (its weights are part of the repository)."""
    from library.toyworld.model import TOY_MODEL_DIR

    if not (TOY_MODEL_DIR / "model_index.json").is_file():
        raise UserError(f"the toy model is missing from {TOY_MODEL_DIR}; it is part of the repository: restore it with "
                        "`git checkout -- library/resources/toy_model` (or rebuild it, see docs/toy_model.md)")
    return TOY_MODEL_DIR


def write_dataset(out: Path, count: int, seed: int, concepts: int = 1) -> Path:
    """Images of the held-out concept captioned with the token string (and of the second concept, with its own
    token, for a two-concept run), plus a dataset TOML."""
    subsets = [(write_images(out / "images", STAR, count, seed), None)]
    if concepts == 2:
        subsets.append((write_images(out / "images_cross", CROSS, count, seed + 1), CROSS))
    return write_config(out / "dataset.toml", subsets)


SAMPLE_PROMPTS = [
    f"a {STAR.token} on a white background",
    f"a {STAR.token} on a gray background",
    f"a {STAR.init_word} on a white background",  # the init word alone: what the model drew before the new token
]


def sample_prompts(concepts: int) -> list[str]:
    if concepts == 1:
        return SAMPLE_PROMPTS
    return SAMPLE_PROMPTS[:2] + [f"a {CROSS.token} on a white background", f"a {CROSS.token} on a black background",
                                 f"a {CROSS.init_word} on a white background"]


def write_sample_prompts(out: Path, concepts: int = 1) -> Path:
    path = out / "sample_prompts.txt"
    path.write_text("".join(f"{prompt} --w 64 --h 64 --d {i + 1} --s 20 --l 4\n" for i, prompt in enumerate(sample_prompts(concepts))))
    return path


def write_sample_grid(sample_dir: Path, name: str, path: Path, scale: int = 2) -> Path | None:
    """One labelled PNG of the samples taken during training: a row per sampling step, a column per prompt."""
    from PIL import Image, ImageDraw

    pattern = re.compile(rf"^{re.escape(name)}_(\d+)_(\d+)_")
    cells = {}
    for file in sorted(sample_dir.glob(f"{name}_*.png")):
        match = pattern.match(file.name)
        if match:
            cells[(int(match.group(1)), int(match.group(2)))] = file
    if not cells:
        return None
    steps = sorted({step for step, _ in cells})
    columns = sorted({column for _, column in cells})
    width, height = (side * scale for side in Image.open(next(iter(cells.values()))).size)
    label_w, label_h = 64, 14  # room for "step 300" on the left and a prompt number on top
    grid = Image.new("RGB", (label_w + width * len(columns), label_h + height * len(steps)), "white")
    draw = ImageDraw.Draw(grid)
    for j, column in enumerate(columns):
        draw.text((label_w + j * width + 4, 1), f"prompt {column + 1}", fill="black")
    for i, step in enumerate(steps):
        draw.text((4, label_h + i * height + height // 2 - 5), f"step {step}", fill="black")
    for (step, column), file in cells.items():
        image = Image.open(file).convert("RGB").resize((width, height), Image.NEAREST)
        grid.paste(image, (label_w + columns.index(column) * width, label_h + steps.index(step) * height))
    grid.save(path)
    return path


def python_command() -> str:
    """The interpreter running this script, as a user would type it (``.venv/bin/python`` after ``make demo``)."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = toy_model_dir()
    steps = args.steps
    config = write_dataset(out, args.images, args.seed, args.concepts)
    prompts = write_sample_prompts(out, args.concepts)
    argv = training_argv(model, config, out, STAR, steps, args.seed) + [
        f"--sample_prompts={prompts}",
        f"--sample_every_n_steps={max(1, steps // 4)}",
        "--sample_at_first",
    ]
    print(f"the same run from a shell:\n  {python_command()} train_textual_inversion.py " + " ".join(shlex.quote(a) for a in argv))

    from library.training.parser import run_training

    started = time.time()
    run_training(argv)
    embedding = out / f"{STAR.token}.safetensors"
    grid = write_sample_grid(out / "sample", STAR.token, out / "sample_grid.png")
    print(f"done in {time.time() - started:.0f} s: embedding {embedding}, samples in {out / 'sample'}, "
          f"loss chart {out / f'{STAR.token}_loss.png'}")
    if grid:
        print(f"sample grid {grid}: a row per sampling step, a column per prompt:")
        for i, prompt in enumerate(sample_prompts(args.concepts)):
            print(f"  prompt {i + 1}: {prompt}")
    print(f"score it: {python_command()} tools/concept_recovery.py --embedding {embedding}")
    if args.concepts == 2:
        print(f"and the second concept: {python_command()} tools/concept_recovery.py --embedding {out / f'{CROSS.token}.safetensors'} "
              + " ".join(CROSS.scoring_flags))


if __name__ == "__main__":
    sys.exit(run_main(main))
