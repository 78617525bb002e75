"""What each validation pass logs, and the metric that chooses the best epoch (``--metric-for-best-model``)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..data.task_metrics import evaluate_rows, flatten_metrics
from ..errors import DHRDInputError
from ..inference.class_report import class_report, flat_class_metrics
from .run_rows import RunRows
from .training_args import DHRDTrainingArguments

logger = logging.getLogger(__name__)


def run_metrics(args: DHRDTrainingArguments, rows: RunRows, compute_metrics=None):
    """The logged name of the metric that chooses the best epoch, and the validation metrics of an epoch: the
    caller's ``compute_metrics`` beside DHRD's, which the best checkpoint and the run's history need."""
    eval_rows, input_format, label_names = rows.eval_rows, rows.input_format, rows.label_names
    # no validation rows (--skip-validation): no validation pass, nothing to choose by
    name = args.metric_for_best_model
    metric_key = best_metric_key(name, eval_rows, input_format, label_names) if eval_rows else name
    if metric_key != "score" and not args.choose_best:
        logger.warning("--metric-for-best-model %s has no effect: no best epoch is chosen", args.metric_for_best_model)

    def dhrd_metrics(prediction) -> dict:
        probs = prediction_probabilities(prediction)
        found = validation_metrics(eval_rows, probs, input_format, label_names, wanted=(metric_key,))
        return {**(compute_metrics(prediction) if compute_metrics else {}), **found}

    return metric_key, dhrd_metrics


def prediction_probabilities(prediction) -> np.ndarray:
    """The class probabilities of a validation pass's ``EvalPrediction``, one row per validation row."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), -1).numpy()


def validation_metrics(eval_rows, probs, input_format: str, label_names, wanted=()) -> dict[str, float]:
    """One validation pass as Trainer logs it: the official metrics (``flatten_metrics``), each task's
    macro-F1, and the per-class metrics named in ``wanted`` (``<task>/f1:<label>``; all of them would crowd
    the log of a many-label task)."""
    official = flatten_metrics(evaluate_rows(eval_rows, probs, input_format))
    per_class = flat_class_metrics(class_report(eval_rows, probs, input_format, label_names))
    return {**{k: v for k, v in per_class.items() if k.endswith("/macro_f1") or k in wanted}, **official}


def best_metric_key(name: str, eval_rows, input_format: str, label_names) -> str:
    """The logged name of ``--metric-for-best-model NAME``: ``score`` and ``loss`` as they are, a task's
    metric (``accuracy``, ``macro_f1``, ``f1:<label>``) under its task's name, ``<task>/<metric>`` as given."""
    if name in ("score", "loss"):
        return name
    tasks = list(dict.fromkeys(e.task for e in eval_rows))
    key = name if "/" in name or len(tasks) > 1 else f"{tasks[0]}/{name}"
    uniform = np.full((len(eval_rows), len(label_names)), 1.0 / len(label_names))
    report = class_report(eval_rows, uniform, input_format, label_names)
    flat = flatten_metrics(evaluate_rows(eval_rows, uniform, input_format))
    official = [k for k in flat if "/" in k and not k.endswith(("/examples", "/rows"))]
    official += [f"{task}/macro_f1" for task in tasks if f"{task}/macro_f1" not in official]
    if key in official or key in flat_class_metrics(report):
        return key
    prefix = "" if len(tasks) == 1 else "<task>/"
    names = [k if len(tasks) > 1 else k.split("/", 1)[1] for k in official if len(tasks) > 1 or k[-6:] != "/score"]
    labels = sorted({label for values in report.values() for label in values["labels"]})
    raise DHRDInputError(
        f"--metric-for-best-model {name} is not a validation metric of this run; choose score, loss, "
        f"{', '.join(dict.fromkeys(names))} or {prefix}precision|recall|f1:<label> (labels: {', '.join(labels)})"
    )
