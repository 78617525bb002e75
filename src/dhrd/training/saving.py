"""The kept model scored the way it will be served, then saved with its metrics, card and provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..hub import write_model_card
from ..inference.class_report import confusion_png_path, save_confusion_png
from ..inference.evaluation import predict_proba, scores_report
from ..modeling import save_classifier
from ..provenance import provenance
from ..runtime import write_json_atomic
from .model_setup import set_training_attention
from .training_args import DHRDTrainingArguments

PREDICTIONS_FILE = "validation-predictions.json"
TEST_PREDICTIONS_FILE = "test-predictions.json"  # --test-file's


def save_scored(
    best,
    tokenizer,
    eval_rows,
    input_format,
    args: DHRDTrainingArguments,
    output: Path,
    run: dict,
    memory=None,
    test_rows=(),
) -> None:
    """Score the best model the way it will be served (``predict_proba``) on the validation rows (unless
    ``--skip-validation``) and the test rows (``--test-file``), then save it and its metrics (with ``memory()``'s
    record of the run's resident memory, taken last, and ``provenance``)."""
    best.eval()
    # served as loaded: with the default attention kernel, not training's eager one on a CPU. In bf16 the two
    # differ enough to flip near-ties, and training's score then disagreed with `dhrd evaluate` by an example.
    # A backbone without SDPA is served (and scored) with eager attention.
    try:
        set_training_attention(best, "sdpa")
    except (ValueError, ImportError):
        set_training_attention(best, "eager")
    label_names = [best.config.id2label[i] for i in range(best.config.num_labels)]

    def scored(rows, predictions_file: str, figure: Path) -> dict:
        """Metrics of ``rows``; their per-row probabilities go to ``predictions_file`` (paired comparisons
        with confidence intervals, dhrd reproduce), before the metrics, whose presence marks the run finished."""
        texts = [e.text for e in rows]
        probs = predict_proba(
            best, tokenizer, texts, args.per_device_eval_batch_size, args.max_length, args.truncation, args.bf16
        )
        report = scores_report(rows, probs, input_format, label_names)
        figure = save_confusion_png(report["classes"], figure)
        write_json_atomic(
            output / predictions_file,
            {"ids": [e.id for e in rows], "probs": np.round(np.asarray(probs, dtype=np.float64), 6).tolist()},
        )
        return {**report, "confusion_png": str(figure)}

    if args.score_validation:
        validation = scored(eval_rows, PREDICTIONS_FILE, confusion_png_path(output / "metrics.json"))
    else:  # --skip-validation: the test file's scores are the run's
        validation = {"validation_scored": False}
    metrics = {**validation, **run}
    if test_rows:
        test = scored(test_rows, TEST_PREDICTIONS_FILE, output / "test-confusion.png")
        metrics["test"] = {"file": args.test_file, **test}
    save_classifier(best, tokenizer, output / "model", max_length=args.max_length, truncation=args.truncation)
    write_model_card(output / "model", settings=args.to_dict(), metrics=metrics)
    if memory is not None:
        metrics["memory"] = memory()
    # after the model card: the card is pushed with the model, and the command line holds this machine's paths
    metrics["provenance"] = provenance()
    write_json_atomic(output / "metrics.json", metrics)
