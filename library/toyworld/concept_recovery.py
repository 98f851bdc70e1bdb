"""Concept recovery: does a trained embedding make the toy model draw the held-out concept?

K images are generated for "a <trigger> on a <background> background" (backgrounds cycled) with the embedding
loaded, and the pixel classifier counts how many show the held-out (color, shape). The baseline is the same
prompts with the init word alone ("a star on a ... background"), which the model draws in its familiar colors.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from library.toyworld import classifier
from library.toyworld.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS, generate_images
from library.toyworld.model import TOY_MODEL_DIR, load_toy_pipeline
from library.toyworld.world import BACKGROUNDS, HELD_OUT


@dataclass(frozen=True)
class Recovery:
    recovery: float  # fraction of images with the embedding that show the held-out concept
    baseline: float  # the same for the init word alone
    samples: int
    trigger: str
    init_word: str
    # what the classifier read, "color shape" -> count, most common first: shows what the misses drew instead
    produced: dict[str, int] = field(default_factory=dict)
    baseline_produced: dict[str, int] = field(default_factory=dict)


def _prompts(subject: str, n: int) -> list[str]:
    article = "an" if subject[0] in "aeiou" else "a"
    return [f"{article} {subject} on a {BACKGROUNDS[i % len(BACKGROUNDS)]} background" for i in range(n)]


def _rate(pipe, prompts: list[str], seed: int, steps: int, guidance: float, concept=HELD_OUT) -> tuple[float, dict[str, int]]:
    images = generate_images(pipe, prompts, seed, num_inference_steps=steps, guidance_scale=guidance)
    predictions = [classifier.classify(image) for image in images]
    produced = Counter(f"{p.color} {p.shape}" for p in predictions)
    return classifier.concept_rate(predictions, tuple(concept)), dict(produced.most_common())


def concept_recovery(
    embedding: str | Path,
    *,
    model_dir: str | Path = TOY_MODEL_DIR,
    samples: int = 32,
    init_word: str = "star",
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    concept: tuple[str, str] = HELD_OUT,
) -> Recovery:
    """Recovery rate of `embedding` on the toy model and the init word's baseline, with the same seeds.

    `concept` is the (color, shape) the embedding should draw: the held-out purple star unless another is given
    (e.g. each embedding of a several-concepts run, scored one by one)."""
    from library.embeddings import load_embeddings_into, make_prompt_rewriter

    pipe = load_toy_pipeline(model_dir)
    baseline, baseline_produced = _rate(pipe, _prompts(init_word, samples), seed, steps, guidance, concept)
    mapping = load_embeddings_into([pipe.tokenizer], [pipe.text_encoder], "sd1", [str(embedding)])
    trigger = next(iter(mapping))
    rewrite = make_prompt_rewriter(mapping)
    recovery, produced = _rate(pipe, [rewrite(p) for p in _prompts(trigger, samples)], seed, steps, guidance, concept)
    return Recovery(recovery, baseline, samples, trigger, init_word, produced, baseline_produced)
