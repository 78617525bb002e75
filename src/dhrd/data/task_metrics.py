"""SuperGLUE's official metrics on a task's original examples, in percent: each task's score, the SuperGLUE
average, the floors a model must beat (best constant predictor, chance), and metrics from predicted label
names (systems that answer in text)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

from ..errors import DHRDInputError
from .examples import Example, example_groups, percent
from .tasks import TASKS, chooses_candidate, task_rules


def task_metrics(task_name: str, examples: Sequence[Example], probs: np.ndarray, input_format: str) -> dict:
    """Official metrics of one task, in percent, on its original examples; ``score`` is the paper's task
    score (CB and MultiRC pairs averaged). A user file's task: accuracy (its score) and macro-F1."""
    probs = np.asarray(probs, dtype=np.float64)
    result = task_rules(task_name).official_metrics(examples, probs, input_format)
    result.update(examples=len(example_groups(examples)), rows=len(examples))
    return _with_score(task_name, result)


def _with_score(task_name: str, result: dict) -> dict:
    """Add the task score (the mean of its official metrics) and put the official metrics first."""
    metric_names = task_rules(task_name).metrics
    result["score"] = round(float(np.mean([result[m] for m in metric_names])), 4)
    return {k: result[k] for k in [*metric_names, *sorted(set(result) - set(metric_names))]}


def constant_predictions(
    examples: Sequence[Example], num_labels: int, label_names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Probabilities of every constant predictor: one per label (named by ``label_names`` where given), and for
    candidate rows (yes/no CB and COPA) one per candidate (that candidate chosen for every example)."""
    predictors = {}
    candidates = sorted({e.candidate for e in examples if e.candidate and chooses_candidate(e.task)})
    for candidate in candidates:
        yes = np.array([1.0 if e.candidate == candidate else 0.0 for e in examples])
        predictors[f"always {candidate}"] = np.stack([1 - yes, yes], -1)
    if not candidates:
        for label in range(num_labels):
            name = repr(label_names[label]) if label_names else f"label {label}"
            predictors[f"always {name}"] = np.eye(num_labels)[[label] * len(examples)]
    return predictors


def majority_floor(
    task_name: str,
    examples: Sequence[Example],
    input_format: str,
    num_labels: int,
    label_names: Sequence[str] | None = None,
) -> dict:
    """The task score of the best constant predictor on these examples (always the majority class, or for CB
    the constant whose F1/accuracy mean is highest): a model must beat it to have learnt anything."""
    best = None
    for name, probs in constant_predictions(examples, num_labels, label_names).items():
        metrics = task_metrics(task_name, examples, probs, input_format)
        if best is None or metrics["score"] > best["score"]:
            best = {"score": metrics["score"], "predictor": name}
    return best


def chance_score(
    task_name: str, examples: Sequence[Example], input_format: str, num_labels: int, draws: int = 200, seed: int = 0
) -> float:
    """The expected task score of guessing uniformly at random (a seeded Monte Carlo mean)."""
    rng = np.random.default_rng(seed)
    scores = [
        task_metrics(task_name, examples, rng.random((len(examples), num_labels)), input_format)["score"]
        for _ in range(draws)
    ]
    return round(float(np.mean(scores)), 2)


def floors(
    examples: Sequence[Example],
    input_format: str,
    num_labels: int,
    chance: bool = True,
    label_names: Sequence[str] | None = None,
) -> dict[str, dict]:
    """Per task in ``examples``: its majority floor (best constant predictor, named by its label where
    ``label_names`` are given) and, with ``chance``, chance score (a Monte Carlo mean: a training run's report
    skips it)."""
    by_task: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_task[example.task].append(example)
    return {
        name: {
            **majority_floor(name, rows, input_format, num_labels, label_names),
            **({"chance": chance_score(name, rows, input_format, num_labels)} if chance else {}),
        }
        for name, rows in by_task.items()
    }


def not_learnt(metrics: dict) -> list[str]:
    """One line per task whose score is not above its majority floor (``metrics["floors"]``, as training and
    ``evaluate`` record it; none for metrics without it): the model answers no better than always giving one
    label, which a too-high learning rate does quietly (the 0.5B student at lr 1e-3 on ComVE: 299 of 300
    validation rows one class, its loss at or above ln 2 nearly all epoch)."""
    lines = []
    for task, floor in metrics.get("floors", {}).items():
        score = metrics["tasks"][task]["score"]
        if score <= floor["score"]:
            lines.append(
                f"{task}: score {score:.2f} is not above the majority floor {floor['score']:.2f}"
                f" ({floor['predictor']}): the model has not learnt the task; a smaller --learning-rate, more rows"
                " or more epochs may help"
            )
    return lines


def label_metrics(task_name: str, predicted: Sequence[str | None], gold: Sequence[str]) -> dict:
    """Official metrics, in percent, from one predicted native label per original example (systems that
    answer in text: CoT). ``None`` (no answer could be read) is scored as wrong."""
    task = TASKS.get(task_name)
    if task is not None and task.per_answer:
        raise DHRDInputError(f"{task.folder} is scored per answer (F1a, EM): it has no one label per example")
    said = [p if p is not None else "<unparsed>" for p in predicted]
    result = {"accuracy": percent(np.mean([p == g for p, g in zip(said, gold)]))}
    if task is None:  # a user file's task: macro-F1 over the labels it has, beside accuracy
        result["macro_f1"] = percent(f1_score(gold, said, labels=sorted(set(gold)), average="macro", zero_division=0))
    elif "f1" in task.metrics:
        names = list(task.native_labels)
        result["f1"] = percent(f1_score(gold, said, labels=names, average="macro", zero_division=0))
    result["examples"] = len(gold)
    return _with_score(task_name, result)


def superglue_average(per_task: dict[str, dict]) -> float:
    """The paper's average: the mean of the task scores (CB and MultiRC metric pairs averaged first)."""
    return round(float(np.mean([m["score"] for m in per_task.values()])), 4)


def evaluate_rows(examples: Sequence[Example], probs: np.ndarray, input_format: str) -> dict:
    """Metrics for rows of one or several tasks: ``{"score": avg, "tasks": {task: metrics}}``."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        by_task[example.task].append(i)
    per_task = {
        name: task_metrics(name, [examples[i] for i in rows], np.asarray(probs)[rows], input_format)
        for name, rows in by_task.items()
    }
    return {"score": superglue_average(per_task), "tasks": per_task}


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """``{"score": s, "cb/f1": ..., ...}``: the flat form Trainer logs."""
    flat = {"score": metrics["score"]}
    for name, values in metrics["tasks"].items():
        for key, value in values.items():
            flat[f"{name}/{key}"] = value
    return flat
