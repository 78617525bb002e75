"""``Task``: the rules every task has (labels, answer words, how a record becomes classifier rows and teacher
items, hub rows, official metrics), with defaults that fit a task of one yes/no question per record. Each
SuperGLUE task overrides what differs (``boolq``, ``tasks``); code that differs by task asks its ``Task``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.metrics import f1_score

from ..errors import DHRDInputError, where
from .examples import Example, TeacherItem, candidate_predictions, example_groups, percent
from .superglue_records import label_index, record_example, require_fields, yes_no_text

YES_NO_LABELS = ("No", "Yes")
YES_NO_ANSWERS = {"Yes": "true", "No": "false"}  # the teacher's words for a true/false task


@dataclass(frozen=True)
class Task:
    """A SuperGLUE task and its rules. Code that differs by task asks the task (these flags, or the methods
    its class overrides: how a record becomes classifier rows and teacher items) instead of testing its name.
    The default methods fit a task with one yes/no question per record."""

    name: str
    folder: str
    native_labels: tuple[str, ...]
    metrics: tuple[str, ...]  # the official metrics; their mean is the task score
    # the words the teacher and zero-shot CoT answer with and the native label each means, in the prompt's
    # order (a plain dict: the teacher's cache rows map a word back through it)
    answers: dict[str, str] = field(compare=False)
    # yes/no format: one row per candidate (CB's relations, COPA's choices) and an example's prediction is
    # the candidate with the highest P(Yes), so its metrics and constant predictors are per candidate
    candidate_rows: bool = False
    # the rows are candidate answers scored one by one (MultiRC: F1a over answers, EM over questions): no one
    # label per example, and the teacher is asked about each answer
    per_answer: bool = False
    # zero-shot CoT asks one question per example and reads one label back (none for a per-answer task)
    zero_shot_cot: bool = True
    # the user's own rows (``OWN_DATA``): labels of their own, rows keyed by an id column or their number
    own_data: bool = False

    required: ClassVar[tuple[str, ...]] = ()  # the record fields every row needs

    @property
    def hub_config(self) -> str:
        return self.name

    def label_names(self, input_format: str) -> tuple[str, ...]:
        return YES_NO_LABELS if input_format == "yesno" else self.native_labels

    def answer_word(self, label: str) -> str:
        """The word the teacher writes for a native label (RTE: "entailment" -> "Yes")."""
        return next(word for word, meant in self.answers.items() if meant == label)

    # classifier rows
    def examples(self, record: dict, input_format: str, source: str, row: int) -> list[Example]:
        """One record's classifier rows: here one row, the yes/no question or the task's native text."""
        self.check(record, source, row)
        gold = record.get("label")
        if input_format == "yesno":
            return [
                record_example(
                    self.name, record, row, yes_no_text(*self.yes_no_parts(record), "Yes"), self.yes_label(gold)
                )
            ]
        text = self.native_text(record)
        return [record_example(self.name, record, row, text, label_index(gold, self.native_labels, source, row))]

    def check(self, record: dict, source: str, row: int) -> None:
        require_fields(record, self.required, source, row)

    def yes_no_parts(self, record: dict) -> tuple[str, str]:
        """The passage and question of the yes/no row (its answer is "Yes")."""
        raise NotImplementedError

    def native_text(self, record: dict) -> str:
        raise NotImplementedError

    def yes_label(self, gold) -> int | None:
        """The yes/no row's label (1: Yes) from the record's official label."""
        return None if gold is None else int(bool(gold))

    # teacher items
    def teacher_items(self, record: dict, source: str, row: int) -> list[TeacherItem]:
        """The teacher's view of one labelled record: here one item, keyed by the record's idx."""
        gold = record.get("label")
        if gold is None:
            raise DHRDInputError(f"{where(source, row, 'label')}: missing (the teacher needs labelled examples)")
        label, block, fields = self.teacher_view(record, gold, source, row)
        if label not in self.native_labels:
            raise DHRDInputError(f"{where(source, row, 'label')}: label {gold!r} is not one of the task's")
        return [TeacherItem(int(record.get("idx", row - 1)), label, self.answer_word(label), block, fields)]

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        """The native label, the prompt block and the text fields (for custom templates) of a record."""
        raise NotImplementedError

    # hub rows
    def from_hub(self, rows: list[dict]) -> list[dict]:
        """Hub rows in the official jsonl schema."""
        return [self.hub_row(row) for row in rows]

    def hub_row(self, row: dict) -> dict:
        """The hub stores labels as class ints (-1: unlabelled); the jsonl as the official values."""
        if isinstance(row.get("label"), int):
            row["label"] = self.official_label(row["label"]) if row["label"] >= 0 else None
        return row

    def official_label(self, index: int):
        return self.native_labels[index]

    def not_comparable(self, data_dir: str | Path | None = None) -> str | None:
        """Why this task's scores with ``data_dir`` cannot be set beside the paper's, if they cannot."""
        return None

    # metrics
    def official_metrics(self, examples: Sequence[Example], probs: np.ndarray, input_format: str) -> dict:
        """The official metrics, in percent, on the original examples (unordered, no task score)."""
        if self.candidate_rows and input_format == "yesno":
            # the rows are this task's (``task_metrics.task_metrics`` asks the task of the rows' name)
            predicted, gold = candidate_predictions(examples, probs, lambda task: task == self.name)
            result = {"accuracy": percent(np.mean([p == g for p, g in zip(predicted, gold)]))}
            if "f1" in self.metrics:
                labels = list(self.native_labels)
                result["f1"] = percent(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0))
            return result
        labels, row_pred = np.array([e.label for e in examples]), probs.argmax(-1)
        if self.per_answer:
            correct = row_pred == labels
            em = np.mean([correct[rows].all() for rows in example_groups(examples).values()])
            return {"f1a": percent(f1_score(labels, row_pred, pos_label=1, zero_division=0)), "em": percent(em)}
        result = {"accuracy": percent(np.mean(row_pred == labels))}
        if "f1" in self.metrics:
            classes = list(range(len(self.native_labels)))
            result["f1"] = percent(f1_score(labels, row_pred, labels=classes, average="macro", zero_division=0))
        return result


class TrueFalseTask(Task):
    """A task whose official labels are booleans."""

    def official_label(self, index: int):
        return bool(index)
