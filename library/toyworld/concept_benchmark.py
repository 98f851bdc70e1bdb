"""Several concepts in one run vs one run per concept, on the toy world (`tools/benchmark.py --compare_concepts`).

Each run is a fresh `train_textual_inversion.py` process, timed from start to exit, as a batch script would run
it: the purple star alone, the blue cross alone, then both in one run (each concept trains the same number of
steps as alone). The ratio is the two-concept run's wall time over the two single runs back to back.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from library.toyworld.demo_data import CROSS, DEMO_STEPS, STAR, training_argv, write_config, write_images
from library.toyworld.model import TOY_MODEL_DIR

REPO = Path(__file__).resolve().parents[2]


def _timed_run(argv: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run([sys.executable, str(REPO / "train_textual_inversion.py"), *argv], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the trainer failed (exit {done.returncode}); see {log}")
    return seconds


def compare_concepts(root: Path, *, steps: int = DEMO_STEPS, images: int = 8, seed: int = 42, repeats: int = 1, score_samples: int = 0) -> dict:
    """Wall times (median over `repeats`) of the single runs and the two-concept run, their ratio, and optionally each
    embedding's concept recovery from the two-concept run."""
    star_images = write_images(root / "images_star", STAR, images, seed)
    cross_images = write_images(root / "images_cross", CROSS, images, seed + 1)
    star_alone = write_config(root / "star.toml", [(star_images, None)])
    cross_alone = write_config(root / "cross.toml", [(cross_images, None)])
    both = write_config(root / "both.toml", [(star_images, None), (cross_images, CROSS)])
    times: dict[str, list[float]] = {"star": [], "cross": [], "both": []}
    for r in range(repeats):
        times["star"].append(_timed_run(training_argv(TOY_MODEL_DIR, star_alone, root / "star", STAR, steps, seed), root / f"star_{r}.log"))
        times["cross"].append(_timed_run(training_argv(TOY_MODEL_DIR, cross_alone, root / "cross", CROSS, steps, seed), root / f"cross_{r}.log"))
        times["both"].append(_timed_run(training_argv(TOY_MODEL_DIR, both, root / "both", STAR, steps, seed), root / f"both_{r}.log"))
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "steps_per_concept": steps, "images_per_concept": images, "repeats": repeats,
        "single_runs_s": {"toyxstar": median["star"], "toyxcross": median["cross"]},
        "two_single_runs_s": median["star"] + median["cross"],
        "two_concept_run_s": median["both"],
        "ratio": median["both"] / (median["star"] + median["cross"]),
        "all_s": times,
    }
    if score_samples:
        from library.toyworld.concept_recovery import concept_recovery

        result["recovery"] = {}
        for concept in (STAR, CROSS):
            scored = concept_recovery(root / "both" / f"{concept.token}.safetensors", samples=score_samples, init_word=concept.init_word,
                                      concept=concept.concept)
            result["recovery"][concept.token] = {"recovery": scored.recovery, "baseline": scored.baseline, "samples": scored.samples}
    return result


def summary_lines(r: dict) -> list[str]:
    lines = [
        f"several concepts: {r['steps_per_concept']} steps and {r['images_per_concept']} images per concept, median of {r['repeats']} run(s) each",
        f"  toyxstar alone {r['single_runs_s']['toyxstar']:.1f} s + toyxcross alone {r['single_runs_s']['toyxcross']:.1f} s "
        f"= {r['two_single_runs_s']:.1f} s back to back",
        f"  both in one run {r['two_concept_run_s']:.1f} s: {r['ratio']:.2f}x the two single runs",
    ]
    for token, scored in r.get("recovery", {}).items():
        lines.append(f"  {token} (from the two-concept run): recovery {scored['recovery']:.3f} baseline {scored['baseline']:.3f} "
                     f"({scored['samples']} samples)")
    return lines
