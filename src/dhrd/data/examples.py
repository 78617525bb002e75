"""What the classifier and the teacher see of a task: an ``Example`` (one classifier row) and a ``TeacherItem``,
and the groups an original example's rows form, with the candidate each group chooses.

Below the task rules (``task_base``, ``tasks``) so every task, the metrics and the readers share one row type
without importing the tasks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Example:
    """One row the classifier sees. Rows that belong to one original example share ``group``."""

    id: str
    task: str
    text: str
    label: int | None  # index into the label names; None where the split has no labels (test)
    group: str
    candidate: str | None = None  # the choice / answer / relation a yes-no row asks about
    source_idx: int | None = None  # the record's ``idx`` (MultiRC: the answer's), the key rationales join on


@dataclass(frozen=True)
class TeacherItem:
    """One training example as the teacher sees it: its id (the cache key), gold label and prompt input."""

    idx: int | str  # a SuperGLUE record's idx, a user id (--id-column) or a 1-based row number
    label: str  # the native label name ("entailment", "true", "choice2", or a user file's label)
    answer: str  # the label as the teacher writes it ("Yes", "Entailment", "Option 2", ...)
    input: str
    fields: dict = field(default_factory=dict)  # the record's text fields, for custom templates


def example_groups(examples: Sequence[Example]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        groups[example.group].append(i)
    return groups


def candidate_predictions(
    examples: Sequence[Example], probs: np.ndarray, chooses: Callable[[str], bool]
) -> tuple[list[str], list[str]]:
    """Per original example: the candidate with the highest P(Yes), and the gold candidate (``chooses``: as in
    ``candidate_choices``)."""
    chosen = candidate_choices(examples, probs, chooses)
    predicted, gold = [], []
    for group, rows in example_groups(examples).items():
        predicted.append(chosen.get(group, examples[rows[0]].candidate))
        gold_rows = [r for r in rows if examples[r].label == 1]
        gold.append(examples[gold_rows[0]].candidate if gold_rows else None)
    return predicted, gold


def candidate_choices(examples: Sequence[Example], probs: np.ndarray, chooses: Callable[[str], bool]) -> dict[str, str]:
    """For examples split into candidate rows (yes/no COPA and CB): the candidate with the highest P(Yes).
    ``chooses`` says from a task's name whether its rows are candidates to choose among: the registry's rule
    (``tasks.chooses_candidate``) for rows of any task, or a task's own when it scores its own rows (the task
    classes sit below the registry, so they pass it in rather than import it)."""
    chosen = {}
    for group, rows in example_groups(examples).items():
        if len(rows) > 1 and chooses(examples[rows[0]].task) and examples[rows[0]].candidate:
            chosen[group] = examples[rows[int(np.argmax(np.asarray(probs)[rows, 1]))]].candidate
    return chosen


def percent(value: float) -> float:
    """A fraction as the percent every metric is reported in (4 decimals)."""
    return round(100.0 * float(value), 4)
