"""Paired comparisons of two methods: the difference of task scores with a bootstrap confidence interval; and the
latency percentiles every throughput table reports.

Two methods trained with the same seeds on the same examples and scored on the same validation examples are
paired twice: by seed and by example. The interval resamples both: validation examples (the same resample for
both methods, so an example that is hard for one is hard for the other) and seeds (with replacement), and
recomputes each task's official score from per-example statistics, so CB's macro-F1 and MultiRC's F1a and
EM are bootstrapped as themselves, not as accuracies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data.examples import Example, example_groups
from .data.task_metrics import task_metrics
from .data.tasks import choice_predictions, chooses_candidate, task_rules


def has_macro_f1(task: str) -> bool:
    """Whether the task's score averages macro-F1 with accuracy (CB)."""
    return "f1" in task_rules(task).metrics


def per_answer(task: str) -> bool:
    """Whether the task is scored over answers and questions (MultiRC's F1a and EM)."""
    return task_rules(task).per_answer


def example_statistics(task: str, examples: Sequence[Example], probs, input_format: str) -> dict[str, np.ndarray]:
    """Per original example (in first-appearance order of its group), what its task score is made of:
    ``correct`` for accuracy; ``gold`` and ``predicted`` class for CB's macro-F1; ``tp``/``fp``/``fn`` over the
    answers and ``all_correct`` for MultiRC."""
    probs = np.asarray(probs, dtype=np.float64)
    if chooses_candidate(task) and input_format == "yesno":
        predicted, gold = choice_predictions(examples, probs)
        stats = {"correct": np.array([p == g for p, g in zip(predicted, gold)], dtype=np.float64)}
        if has_macro_f1(task):
            names = list(task_rules(task).native_labels)
            stats["gold"] = np.array([names.index(g) for g in gold])
            stats["predicted"] = np.array([names.index(p) if p in names else -1 for p in predicted])
        return stats
    labels = np.array([e.label for e in examples])
    row_pred = probs.argmax(-1)
    if per_answer(task):
        groups = list(example_groups(examples).values())
        correct = row_pred == labels
        return {
            "tp": np.array([np.sum((row_pred[g] == 1) & (labels[g] == 1)) for g in groups], dtype=np.float64),
            "fp": np.array([np.sum((row_pred[g] == 1) & (labels[g] == 0)) for g in groups], dtype=np.float64),
            "fn": np.array([np.sum((row_pred[g] == 0) & (labels[g] == 1)) for g in groups], dtype=np.float64),
            "all_correct": np.array([correct[g].all() for g in groups], dtype=np.float64),
        }
    stats = {"correct": (row_pred == labels).astype(np.float64)}
    if has_macro_f1(task):
        stats["gold"], stats["predicted"] = labels, row_pred
    return stats


def _macro_f1(gold: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Macro-F1 of each row of (resamples x examples) arrays, as scikit-learn's with zero_division=0."""
    f1 = []
    for c in range(classes):
        tp = np.sum((gold == c) & (predicted == c), axis=-1)
        fp = np.sum((gold != c) & (predicted == c), axis=-1)
        fn = np.sum((gold == c) & (predicted != c), axis=-1)
        denominator = 2 * tp + fp + fn
        f1.append(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0))
    return np.mean(f1, axis=0)


def resampled_scores(task: str, stats: dict[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    """The task score (percent) on each resample: ``index`` is (resamples x examples) of example positions."""
    if per_answer(task):
        tp, fp, fn = (stats[k][index].sum(-1) for k in ("tp", "fp", "fn"))
        denominator = 2 * tp + fp + fn
        f1a = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        return 100 * (f1a + stats["all_correct"][index].mean(-1)) / 2
    accuracy = stats["correct"][index].mean(-1)
    if has_macro_f1(task):
        classes = len(task_rules(task).native_labels)
        return 100 * (_macro_f1(stats["gold"][index], stats["predicted"][index], classes) + accuracy) / 2
    return 100 * accuracy


def example_count(stats: dict[str, np.ndarray]) -> int:
    return len(next(iter(stats.values())))


def paired_difference(
    task: str,
    baseline: list[dict[str, np.ndarray]],
    method: list[dict[str, np.ndarray]],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Mean over paired seeds of (method score - baseline score), in points, with a bootstrap interval over
    validation examples and seeds. ``baseline[i]`` and ``method[i]`` share seed i and the same examples."""
    if not baseline or len(baseline) != len(method):
        raise ValueError("paired_difference needs the same, non-zero number of runs of each method")
    n = example_count(baseline[0])
    if any(example_count(s) != n for s in baseline + method):
        raise ValueError("paired runs must be scored on the same validation examples")
    everything = np.arange(n)[None, :]
    per_seed = [
        float(resampled_scores(task, m, everything)[0] - resampled_scores(task, b, everything)[0])
        for b, m in zip(baseline, method)
    ]
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(resamples, n))
    differences = np.stack(
        [resampled_scores(task, m, index) - resampled_scores(task, b, index) for b, m in zip(baseline, method)], 1
    )
    seeds = rng.integers(0, len(per_seed), size=(resamples, len(per_seed)))
    boot = np.take_along_axis(differences, seeds, 1).mean(1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(boot, [tail, 100 - tail])
    return {
        "difference": round(float(np.mean(per_seed)), 2),
        "ci": [round(float(low), 2), round(float(high), 2)],
        "level": level,
        "per_seed": [round(d, 2) for d in per_seed],
        "wins": sum(d > 0 for d in per_seed),
        "seeds": len(per_seed),
        "examples": n,
        "resamples": resamples,
        "verdict": verdict(float(low), float(high)),
    }


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "gain"
    if high < 0:
        return "loss"
    return "no measurable difference"


def check_against_metrics(task: str, examples: Sequence[Example], probs, input_format: str) -> bool:
    """Whether the per-example statistics give exactly the official score (a self-check for tests)."""
    stats = example_statistics(task, examples, probs, input_format)
    mine = resampled_scores(task, stats, np.arange(example_count(stats))[None, :])[0]
    official = task_metrics(task, examples, probs, input_format)["score"]
    return abs(mine - official) < 1e-3 if not task_rules(task).own_data else False


def latency_percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of per-request latencies, in milliseconds (numpy's linear interpolation). A request that
    was decoded or classified in a batch counts the batch's whole wall time: it waited for all of it."""
    p50, p95 = np.percentile(np.asarray(seconds, dtype=np.float64), [50, 95])
    return {"latency_p50_ms": round(1000 * float(p50), 2), "latency_p95_ms": round(1000 * float(p95), 2)}
