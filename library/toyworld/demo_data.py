"""Training sets for the toy-world demo: images of a concept captioned with its token, and their dataset TOML.

The demo's concept is the held-out purple star (`toyxstar`, init word `star`). Its two-concept run adds a blue
cross (`toyxcross`, init word `cross`) trained in the same run: the shipped toy model was trained without blue
crosses too (`library.toyworld.model.held_out_pairs`), so both embeddings learn a pair the model never saw
(docs/quickstart.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from library.toyworld.world import HELD_OUT, caption, make_dataset


@dataclass(frozen=True)
class DemoConcept:
    token: str
    init_word: str
    concept: tuple[str, str]  # (color, shape) that the classifier should read in its images
    num_vectors: int = 2

    @property
    def scoring_flags(self) -> list[str]:
        """tools/concept_recovery.py's flags for scoring this concept's embedding."""
        return ["--init_word", self.init_word, "--concept", ",".join(self.concept)]


STAR = DemoConcept("toyxstar", "star", HELD_OUT)
CROSS = DemoConcept("toyxcross", "cross", ("blue", "cross"))
DEMO_STEPS = 500  # docs/quickstart.md: at 300 steps the default seed's star stopped at 0.84 recovery


def training_argv(model: Path, config: Path, out: Path, concept: DemoConcept, steps: int, seed: int) -> list[str]:
    """The demo's trainer flags: `concept` from the command line (a config's other subsets may name more), AdamW at a
    constant 5e-3, latents cached, no data-loader workers."""
    return [
        f"--pretrained_model_name_or_path={model}", f"--dataset_config={config}", f"--output_dir={out}",
        f"--output_name={concept.token}", f"--token_string={concept.token}", f"--init_word={concept.init_word}",
        f"--num_vectors_per_token={concept.num_vectors}", f"--max_train_steps={steps}", "--learning_rate=5e-3",
        "--optimizer_type=AdamW", "--lr_scheduler=constant", "--cache_latents", f"--seed={seed}", "--max_data_loader_n_workers=0",
    ]


def write_images(folder: Path, concept: DemoConcept, count: int, seed: int) -> Path:
    """`count` images of the concept (random size, position, background) captioned "a TOKEN on a ... background"."""
    make_dataset(folder, count, seed=seed, include=[concept.concept], caption_fn=lambda scene: caption(scene, subject=concept.token))
    return folder


def write_config(path: Path, subsets: list[tuple[Path, DemoConcept | None]], *, batch_size: int = 2) -> Path:
    """A dataset TOML with one subset per folder; a subset with a concept names it (token string, init word,
    vectors, output file), one with None trains the command line's --token_string."""
    text = f"[general]\ncaption_extension = \".txt\"\n\n[[datasets]]\nresolution = 64\nbatch_size = {batch_size}\n"
    for folder, concept in subsets:
        text += f"\n  [[datasets.subsets]]\n  image_dir = '{folder.as_posix()}'\n  num_repeats = 1\n"
        if concept is not None:
            text += (f"  token_string = '{concept.token}'\n  init_word = '{concept.init_word}'\n"
                     f"  num_vectors_per_token = {concept.num_vectors}\n  output_name = '{concept.token}'\n")
    path.write_text(text)
    return path
