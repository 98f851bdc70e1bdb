"""Several concepts in one run (issue 17): which token strings a run trains, and which subsets train each.

A dataset-config subset (or its dataset, or [general]) may name its concept with `token_string`, `init_word`,
`num_vectors_per_token`, `output_name` and `learning_rate`. Subsets that name none train the command-line concept
(--token_string, --init_word, --num_vectors_per_token, --output_name, --learning_rate), so a config without these
keys trains exactly one concept, as before. Subsets naming the same token string with the same settings train one
concept together; everything that would make two concepts clash is refused here, before a model is loaded.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from library.errors import UserError
from library.tokens import new_token_names


@dataclass
class Concept:
    """One embedding the run trains: its token string, vectors, file name and the subsets whose images teach it."""

    token_string: str
    init_word: str | None
    num_vectors: int
    output_name: str | None  # file stem; None: --output_name (or "last") for a single-concept run
    learning_rate: float | None  # None: the run's --learning_rate
    subsets: list[str] = field(default_factory=list)  # "datasets[0].subsets[1]" labels of its training subsets
    from_command_line: bool = False

    @property
    def token_names(self) -> list[str]:
        return new_token_names(self.token_string, self.num_vectors)

    def file_stem(self, single: bool, cli_output_name: str | None) -> str:
        """The embedding file's stem: today's --output_name naming for a single concept, else its own name."""
        if single:
            return cli_output_name or "last"
        if self.output_name:
            return self.output_name
        if self.from_command_line and cli_output_name:
            return cli_output_name
        return self.token_string


def _label(i: int, j: int) -> str:
    return f"datasets[{i}].subsets[{j}]"


def resolve_concepts(params, args: argparse.Namespace) -> list[Concept]:
    """The run's concepts in order of first appearance; sets each subset's `concept` index.

    Raises one UserError listing every clash: a token string named with different settings, token names shared by
    two concepts, two concepts writing the same file, and subsets that need --token_string when it is not given.
    """
    concepts: list[Concept] = []
    by_token: dict[str, int] = {}
    problems: list[str] = []
    cli_token = (getattr(args, "token_string", None) or "").strip() or None
    cli_vectors = getattr(args, "num_vectors_per_token", None) or 1
    regs: list = []
    for i, dataset in enumerate(params.datasets):
        for j, subset in enumerate(dataset.subsets):
            if subset.is_reg:
                regs.append((i, subset))
                continue
            named = subset.token_string is not None
            token = subset.token_string.strip() if named else cli_token
            if not token:
                continue  # no --token_string and no token_string key: flag_rules reports it
            wanted = Concept(
                token,
                subset.init_word if subset.init_word is not None else getattr(args, "init_word", None),
                subset.num_vectors_per_token or cli_vectors,
                subset.output_name,
                subset.learning_rate,
                from_command_line=token == cli_token,
            )
            if token not in by_token:
                by_token[token] = len(concepts)
                concepts.append(wanted)
            concept = concepts[by_token[token]]
            if concept is not wanted and _settings(concept) != _settings(wanted):
                other = concept.subsets[0] if concept.subsets else "the command line"
                problems.append(
                    f"{_label(i, j)} and {other} both train the token string {token!r} but with different settings "
                    f"({_describe(wanted)} vs {_describe(concept)}); give the same init_word, num_vectors_per_token, "
                    "output_name and learning_rate, or choose a different token_string"
                )
            concept.subsets.append(_label(i, j))
            subset.concept = by_token[token]
    for i, subset in regs:  # reg images teach no concept; they batch with their dataset's (or the named) concept
        token = subset.token_string or cli_token
        own = [s.concept for s in params.datasets[i].subsets if not s.is_reg]
        subset.concept = by_token.get(token, own[0] if own else 0)
    problems += _clashes(concepts, args)
    if len(concepts) > 1:
        several = ", ".join(repr(c.token_string) for c in concepts)
        for flag in ("weights", "save_as_full_pipeline"):
            if getattr(args, flag, None):
                problems.append(f"--{flag} works with one concept, but the dataset config trains {len(concepts)} ({several})")
        if getattr(args, "_diffusers_outputs", False):
            problems.append(f"the diffusers example's output layout (learned_embeds.safetensors) holds one concept, but the "
                            f"dataset config trains {len(concepts)} ({several}); use this trainer's own flags")
    if problems:
        raise UserError("; ".join(problems) if len(problems) == 1 else "several concepts clash:\n" + "\n".join(f"  - {p}" for p in problems))
    return concepts


def _settings(c: Concept) -> tuple:
    return (c.init_word, c.num_vectors, c.output_name, c.learning_rate)


def _describe(c: Concept) -> str:
    return (f"init_word {c.init_word!r}, num_vectors_per_token {c.num_vectors}, output_name {c.output_name!r}, "
            f"learning_rate {c.learning_rate}")


def _where(c: Concept) -> str:
    return ", ".join(c.subsets) if c.subsets else "the command line"


def _clashes(concepts: list[Concept], args: argparse.Namespace) -> list[str]:
    """Token names shared by two concepts (e.g. 'foo' with 3 vectors names 'foo1'), and file names written twice."""
    problems = []
    owner: dict[str, Concept] = {}
    for c in concepts:
        for name in c.token_names:
            other = owner.get(name.lower())
            if other is not None and other is not c:
                problems.append(
                    f"the concepts {other.token_string!r} ({_where(other)}) and {c.token_string!r} ({_where(c)}) both "
                    f"need the token {name!r} (a token string with N vectors also names token_string1 ... N-1); "
                    "choose token strings that do not share names"
                )
            owner.setdefault(name.lower(), c)
    if len(concepts) > 1:
        stems: dict[str, Concept] = {}
        for c in concepts:
            stem = c.file_stem(False, getattr(args, "output_name", None))
            if stem in (".", "..") or any(ch in stem for ch in "/\\\0"):
                problems.append(f"the concept {c.token_string!r} ({_where(c)}) would be saved as {stem!r}, which is not a plain "
                                "file name; give it an output_name")
            other = stems.get(stem)
            if other is not None:
                problems.append(
                    f"the concepts {other.token_string!r} ({_where(other)}) and {c.token_string!r} ({_where(c)}) would "
                    f"both be saved as {stem!r}; give one of them its own output_name"
                )
            stems.setdefault(stem, c)
    return problems


def names_a_concept(params) -> bool:
    """True if any subset of the dataset config names its own token string."""
    return any(s.token_string is not None for d in params.datasets for s in d.subsets)


def concept_learning_rate(concept: Concept, base: float, cli_rate: float) -> float:
    """A concept's initial rate: its own learning_rate scaled like --learning_rate was (--scale_lr), else the base."""
    if concept.learning_rate is None:
        return base
    return concept.learning_rate * (base / cli_rate if cli_rate else 1.0)


def concept_summary_lines(concepts: list[Concept], tokens, lockstep, rates: list[float], stems: list[str]) -> list[str]:
    """The summary's concept table: tokens and ids, init word, images, repeats, batches, rate and file.

    `lockstep` is the run's ConceptLockstep: each concept's batches per its own epoch, and the run's epoch (the
    longest concept's)."""
    lines = [
        f"  concepts:         {len(concepts)}, trained in lockstep: every step gives each concept one batch of its own "
        f"images (same-resolution batches share one forward pass); one optimizer with a param group per concept, "
        f"gradients clipped per concept; an epoch is {len(lockstep)} steps (the longest concept's)",
    ]
    for index, (concept, unit, rate, stem) in enumerate(zip(concepts, tokens.concepts, rates, stems)):
        images, repeated = lockstep.group.concept_counts(index)
        batches = len(lockstep.views[index])
        ids = ", ".join(f"{n}={i}" for n, i in zip(unit.names, unit.ids[0]))
        lines.append(
            f"    {concept.token_string!r}: {len(unit.names)} vector(s) {ids}; init word {concept.init_word or '*'}; "
            f"{images} images ({repeated} with repeats), {batches} batches per its epoch; "
            f"learning rate {rate:g}; file {stem}; from {', '.join(concept.subsets)}"
        )
    return lines
