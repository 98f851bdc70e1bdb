#!/usr/bin/env python
"""Score a toy-world embedding: how often the toy model draws the held-out concept with it, vs the init word alone.

    python tools/concept_recovery.py --embedding demo_out/toyxstar.safetensors --samples 32

The last line is `recovery: R baseline: B` (fractions of the samples that the pixel classifier reads as the
held-out purple star). See docs/quickstart.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from library.cli import run_main  # noqa: E402
from library.errors import UserError  # noqa: E402


def _counts(produced: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in produced.items())


def _concept(text: str | None) -> tuple[str, str] | None:
    from library.toyworld.world import COLORS, SHAPES

    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or parts[0] not in COLORS or parts[1] not in SHAPES:
        raise UserError(f"--concept {text!r}: expected COLOR,SHAPE with a color of {', '.join(COLORS)} and a shape of {', '.join(SHAPES)}")
    return parts[0], parts[1]


def main(argv: list[str] | None = None) -> None:
    from library.toyworld.concept_recovery import concept_recovery
    from library.toyworld.model import TOY_MODEL_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--embedding", required=True, help="embedding file trained on the toy model (its file name is its trigger word)")
    parser.add_argument("--samples", type=int, default=32, help="images generated for the embedding and for the baseline")
    parser.add_argument("--init_word", default="star", help="the baseline prompt's subject (the init word used for training)")
    parser.add_argument("--model", default=str(TOY_MODEL_DIR), help="toy model directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated images (the same for embedding and baseline)")
    parser.add_argument("--concept", default=None,
                        help="COLOR,SHAPE the embedding should draw (default: the held-out purple,star); for scoring each embedding of a several-concepts run")
    args = parser.parse_args(argv)
    concept = _concept(args.concept)
    if not Path(args.model, "model_index.json").is_file():
        raise UserError(f"--model {args.model}: no toy model there (expected a diffusers folder with model_index.json)")
    if not Path(args.embedding).is_file():
        raise UserError(f"--embedding {args.embedding}: no such file")
    result = concept_recovery(args.embedding, model_dir=args.model, samples=args.samples, init_word=args.init_word, seed=args.seed,
                              **({"concept": concept} if concept else {}))
    print(f"trigger {result.trigger!r}, {result.samples} samples each, baseline prompt subject {result.init_word!r}")
    print(f"with the embedding the classifier read: {_counts(result.produced)}")
    print(f"with {result.init_word!r} alone: {_counts(result.baseline_produced)}")
    print(f"recovery: {result.recovery:.3f} baseline: {result.baseline:.3f}")


if __name__ == "__main__":
    sys.exit(run_main(main))
