"""Score the toy model's prompt following with the pixel classifier, and its behaviour on the held-out concept.

    python tools/eval_toy_model.py                      # the shipped model, 64 images per measurement
    python tools/eval_toy_model.py --grid out/grid.png  # also save a grid of the generated images

Prints one JSON object: color/shape/background accuracy on prompts of seen combinations, and for the held-out
concept (purple star) how often it appears for its own words ("a purple star on a ... background") and for the
Textual Inversion baseline prompt (the init word alone: "a star on a ... background"), on each background, with
what those prompts produced; the same for every further pair the model was trained without (`also_held_out`,
from its train_info.json: the blue cross of the shipped model). --classifier adds the classifier's own accuracy on renders (docs/toy_model.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from library.toyworld import classifier  # noqa: E402
from library.toyworld.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS, classifier_accuracy, generate_images, seen_scenes  # noqa: E402
from library.toyworld.model import TOY_MODEL_DIR, held_out_pairs, load_toy_pipeline  # noqa: E402
from library.toyworld.world import BACKGROUNDS, Scene, caption  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(TOY_MODEL_DIR), help="diffusers directory of the toy model")
    p.add_argument("--n", type=int, default=64, help="images per measurement")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 is faster on a busy machine)")
    p.add_argument("--grid", default=None, help="save the seen-prompt images as one PNG grid here")
    p.add_argument("--classifier", action="store_true", help="also score the classifier on 1000 fresh renders, clean and degraded")
    return p.parse_args(argv)


def save_grid(images, path: str, columns: int = 16) -> None:
    from PIL import Image

    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (64 * columns, 64 * rows), (255, 255, 255))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * 64, (i // columns) * 64))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def unseen_pair_scores(pipe, pair: tuple[str, str], n: int, seed: int, generate: dict) -> dict:
    """How often `pair` comes out of its own words ("a purple star on a ...") and of its shape alone, the Textual
    Inversion baseline ("a star on a ..."), on each background, and what those prompts produced."""
    color, shape = pair
    scores = {}
    for name, subject in {"held_out_words": f"{color} {shape}", "init_word_baseline": shape}.items():
        by_background, produced = {}, Counter()
        for background in BACKGROUNDS:
            prompt = caption(Scene(shape, color, background, 0, 0, 0), subject=subject)
            found = [classifier.classify(image) for image in generate_images(pipe, [prompt] * n, seed, **generate)]
            by_background[prompt] = classifier.concept_rate(found, pair)
            produced.update(" ".join(p.concept) for p in found)
        scores[name] = {
            "held_out_rate": sum(by_background.values()) / len(by_background),
            "by_prompt": by_background,
            "produced": dict(produced.most_common(6)),
        }
    return scores


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_toy_pipeline(args.model)
    generate = dict(num_inference_steps=args.steps, guidance_scale=args.guidance)

    pairs = held_out_pairs(args.model)
    scenes = seen_scenes(args.n, seed=args.seed + 1000, held_out=pairs)
    images = generate_images(pipe, [caption(s) for s in scenes], args.seed, **generate)
    predictions = [classifier.classify(image) for image in images]
    seen = classifier.accuracy(predictions, [s.concept for s in scenes])
    seen["background"] = sum(p.background == s.background for p, s in zip(predictions, scenes)) / len(scenes)
    if args.grid:
        save_grid(images, args.grid)

    never_seen = [unseen_pair_scores(pipe, pair, args.n, args.seed + 1, generate) for pair in pairs]
    results = {"settings": vars(args), "seen_prompts": seen, "held_out": never_seen[0],
               "also_held_out": {" ".join(pair): scores for pair, scores in zip(pairs[1:], never_seen[1:])}}
    if args.classifier:
        results["classifier_on_renders"] = classifier_accuracy()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
