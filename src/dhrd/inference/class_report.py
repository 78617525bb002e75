"""Per-class evaluation: precision, recall, F1 and support per label, and the confusion matrix (JSON and PNG).

Each task is scored on the decision it makes per item (scikit-learn's ``classification_report`` and
``confusion_matrix`` on those decisions):

* one row per example (your files, BoolQ, RTE, WiC, WSC, every task in the native format): its label;
* yes/no CB and COPA, one row per candidate: per original example, the candidate with the highest P(Yes)
  against the gold one (CB's three relations, COPA's two choices), as their official metrics score them;
* MultiRC: per answer, its label (F1a is the F1 of the positive label over answers; EM, per question, has
  no per-class form).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from ..data.examples import Example
from ..data.tasks import choice_predictions, chooses_candidate, task_rules
from ..runtime import save_figure_atomic

CLASS_METRICS = ("precision", "recall", "f1")


def task_decisions(
    task: str, examples: Sequence[Example], probs: np.ndarray, input_format: str, label_names: Sequence[str]
) -> tuple[list[str], list[str], list[str], str]:
    """(gold, predicted, class names, unit) of one task's rows: what its per-class report is computed on."""
    if chooses_candidate(task) and input_format == "yesno" and any(e.candidate for e in examples):
        predicted, gold = choice_predictions(examples, probs)
        names = list(dict.fromkeys(e.candidate for e in examples))
        return gold, predicted, names, "example (the candidate with the highest P(Yes))"
    predicted = np.asarray(probs).argmax(-1)
    gold = [label_names[e.label] for e in examples]
    unit = "answer" if task_rules(task).per_answer else "example"
    return gold, [label_names[int(p)] for p in predicted], list(label_names), unit


def _percent(value: float) -> float:
    return round(100.0 * float(value), 4)


def _scores(row: dict) -> dict:
    return {
        "precision": _percent(row["precision"]),
        "recall": _percent(row["recall"]),
        "f1": _percent(row["f1-score"]),
        "support": int(row["support"]),
    }


def decisions_report(gold: Sequence[str], predicted: Sequence[str], names: Sequence[str], unit: str) -> dict:
    """Per-class precision/recall/F1 (percent) and support, their macro and weighted averages, and the
    confusion matrix (rows: gold, columns: predicted, both in ``labels`` order)."""
    names = list(names)
    report = classification_report(gold, predicted, labels=names, output_dict=True, zero_division=0)
    return {
        "unit": unit,
        "labels": names,
        "per_class": {name: _scores(report[name]) for name in names},
        "macro_avg": _scores(report["macro avg"]),
        "weighted_avg": _scores(report["weighted avg"]),
        "confusion_matrix": confusion_matrix(gold, predicted, labels=names).tolist(),
    }


def class_report(
    examples: Sequence[Example], probs: np.ndarray, input_format: str, label_names: Sequence[str]
) -> dict[str, dict]:
    """``{task: decisions_report}`` for labelled rows of one or several tasks."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        by_task[example.task].append(i)
    probs = np.asarray(probs)
    return {
        task: decisions_report(
            *task_decisions(task, [examples[i] for i in rows], probs[rows], input_format, label_names)
        )
        for task, rows in by_task.items()
    }


def flat_class_metrics(report: dict[str, dict]) -> dict[str, float]:
    """``{"<task>/macro_f1": ..., "<task>/f1:<label>": ..., ...}``: the names a best epoch can be chosen by."""
    flat = {}
    for task, values in report.items():
        flat[f"{task}/macro_f1"] = values["macro_avg"]["f1"]
        for label, scores in values["per_class"].items():
            flat |= {f"{task}/{metric}:{label}": scores[metric] for metric in CLASS_METRICS}
    return flat


def confusion_png_path(json_path: str | Path) -> Path:
    """Where the confusion-matrix figure of a metrics JSON goes: ``eval.json`` -> ``eval-confusion.png``."""
    path = Path(json_path)
    return path.with_name(f"{path.stem}-confusion.png")


def save_confusion_png(report: dict[str, dict], path: str | Path) -> Path:
    """One confusion matrix per task, side by side, with the label names (sklearn's ConfusionMatrixDisplay)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    sizes = [max(3.5, 0.6 * len(values["labels"]) + 2.5) for values in report.values()]
    fig, axes = plt.subplots(1, len(report), figsize=(sum(sizes), max(sizes)), squeeze=False)
    for ax, (task, values) in zip(axes[0], report.items()):
        labels = values["labels"]
        display = ConfusionMatrixDisplay(np.asarray(values["confusion_matrix"]), display_labels=labels)
        long_names = max(len(str(name)) for name in labels) > 6
        display.plot(ax=ax, cmap="Blues", colorbar=False, include_values=len(labels) <= 20)
        if long_names:
            plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
        ax.set_title(f"{task}: per {values['unit'].split(' ')[0]}")
    fig.tight_layout()
    return save_figure_atomic(fig, path)
