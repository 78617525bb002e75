"""Which rows a cap or a held-out split takes: seeded (or first-N) samples of whole examples, and seeded,
stratified carves. Training, the teacher's subsets and ``dhrd reproduce`` share them, so one seed always
selects the same examples."""

from __future__ import annotations

import numpy as np

from ..errors import DHRDInputError
from .examples import Example

SELECTIONS = ("seeded", "first")  # which rows a cap takes: a seeded sample, or the first N in file order


def sample_examples(examples: list[Example], n: int | None, seed: int, selection: str = "seeded") -> list[Example]:
    """The first ``n`` original examples of a seeded shuffle (all rows of a kept example stay together), in
    their original order; with ``selection="first"``, the first ``n`` examples in file order. Training caps,
    the teacher's capped subsets and ``dhrd reproduce`` share it, so a cap with the same seed (or ``first``)
    always selects the same examples."""
    if selection not in SELECTIONS:
        raise DHRDInputError(f"unknown selection {selection!r}: choose from {', '.join(SELECTIONS)}")
    if not n:
        return examples
    groups = list(dict.fromkeys(e.group for e in examples))
    if n >= len(groups):
        return examples
    positions = range(n) if selection == "first" else sample_positions(len(groups), n, seed)
    keep = {groups[k] for k in positions}
    return [e for e in examples if e.group in keep]


def carve_split(rows: list, fraction: float, seed: int, option: str = "--dev-fraction") -> tuple[list, list]:
    """A seeded split of ``fraction`` of the examples, stratified by label (whole examples: the yes/no rows
    of one example stay together), and the rows left to train on, each in their original order. The alpha
    search's dev split (``--dev-fraction``) and a validation split carved from a single training file
    (``--validation-fraction``) are both made here; ``option`` names the one a message is about."""
    from sklearn.model_selection import train_test_split

    groups = list(dict.fromkeys(e.group for e in rows))
    labels_of: dict = {}
    for e in rows:
        labels_of.setdefault(e.group, []).append(e.label)
    strata = [str(labels_of[g]) for g in groups]
    held_count = max(1, round(fraction * len(groups)))
    if held_count >= len(groups):
        raise DHRDInputError(f"{option} {fraction}: {len(groups)} training examples leave none to train on")
    counts = {s: strata.count(s) for s in strata}
    both_sides = min(held_count, len(groups) - held_count) >= len(counts)  # room for every label on each side
    stratify = strata if min(counts.values()) >= 2 and both_sides else None
    _, held_groups = train_test_split(groups, test_size=held_count, random_state=seed, stratify=stratify)
    held = set(held_groups)
    return [e for e in rows if e.group not in held], [e for e in rows if e.group in held]


def sample_positions(count: int, n: int, seed: int) -> list[int]:
    """The 0-based positions, in order, of the ``n`` of ``count`` items ``sample_examples`` keeps: a dataset
    whose rows are its examples is sampled by them without reading the other rows."""
    return sorted(np.random.default_rng(seed).permutation(count)[:n].tolist())
