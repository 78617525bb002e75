"""The int8 file checked at export (``Int8Check``): its labels against torch fp32's on up to ``CHECK_ROWS`` real
rows (and its accuracy against theirs where the rows have gold labels) and its speed beside onnxruntime fp32's,
timed side by side; what ``dhrd export`` prints of it, and the line it ends with where the bar
(``int8_bar.judge``) did not keep the file."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DHRDInputError
from ..modeling import run_settings
from .int8_bar import builtin_rows
from .onnx_engine import OnnxClassifier
from .onnx_graph import CHECK_TEXTS, INT8_FILE, ONNX_FILE
from .onnx_quantize import INT8_CONFIG

logger = logging.getLogger(__name__)


CHECK_ROWS = 200  # rows the int8 file is checked on at export: enough to see a flip rate of 1%, in seconds
CHECK_BATCH_SIZE = 16
NEAR_TIE = 0.05  # a row whose torch fp32 top two classes are closer than this in probability: undecided


@dataclass
class Int8Check:
    """How the int8 file an export wrote answers, against torch fp32 and onnxruntime fp32, on ``rows`` rows."""

    quantization: str  # the QuantConfig's name
    description: str
    rows: int
    rows_source: str  # which rows: a file's name, a task split, or the built-in check texts
    labels_agreeing: int  # rows whose int8 label is torch fp32's
    agreement: float
    max_abs_prob_diff: float
    batch_size: int
    fp32_examples_per_s: float  # onnxruntime fp32, timed beside the int8 file in the same export
    int8_examples_per_s: float
    speedup: float  # int8 / onnxruntime fp32
    flipped_near_ties: int = 0  # labels int8 changed on rows torch fp32 decided by less than near_tie_margin
    near_tie_margin: float = NEAR_TIE  # between the probabilities of torch fp32's top two classes
    labelled_rows: int = 0  # rows with a gold label: the accuracies below are over these (per row)
    fp32_accuracy: float | None = None  # torch fp32's, in percent; None where no row has a label
    int8_accuracy: float | None = None
    accuracy_change: float | None = None  # int8 less torch fp32, in points
    # the bar (int8_bar.judge): set by the export; verdict says whether it was met, not judged, or why the file went
    min_agreement: float | None = None
    max_accuracy_change: float | None = None
    kept: bool = True
    verdict: str = ""


class CheckRows(NamedTuple):
    texts: list[str]
    labels: list[int | None]  # gold label indices where the rows have them
    source: str  # a file's name, a task split, or the built-in check texts


def check_rows(classifier, model_dir: Path, check_file: str | Path | None) -> CheckRows:
    """Up to ``CHECK_ROWS`` rows to check the int8 file on, their gold labels where they have them, and where
    they come from: ``check_file`` (read with the model's columns), else the validation split of the model's
    task or the data file its run directory records (``train_args.json``), else the three built-in check texts."""
    from .evaluation import examples_for_model

    def first(examples, source: str) -> CheckRows:
        examples = examples[:CHECK_ROWS]
        return CheckRows([e.text for e in examples], [e.label for e in examples], source)

    if check_file is not None:
        examples, _ = examples_for_model(classifier, None, "test", file=str(check_file), require_labels=False)
        return first(examples, Path(check_file).name)
    try:
        if (recorded := _recorded_data_file(model_dir)) is not None:
            examples, _ = examples_for_model(classifier, None, "test", file=str(recorded), require_labels=False)
            return first(examples, f"{recorded.name}, recorded by the run")
        examples, _ = examples_for_model(classifier, None, "validation")
        return first(examples, f"{'+'.join(dict.fromkeys(e.task for e in examples))} validation")
    except (DHRDInputError, OSError, ValueError) as error:
        logger.info("no recorded data to check int8 on (%s): the built-in check texts instead", error)
    return CheckRows(list(CHECK_TEXTS), [None] * len(CHECK_TEXTS), f"the {len(CHECK_TEXTS)} built-in check texts")


def _recorded_data_file(model_dir: Path) -> Path | None:
    """The validation (else training) file of a model trained on a file, as its run recorded it: relative to
    the directory training ran in, which is the run directory less the ``output_dir`` it was given."""
    settings = run_settings(model_dir)
    run_dir = str(model_dir.resolve().parent)
    given_output = str(Path(settings.get("output_dir") or "."))
    roots = [Path.cwd()] + ([Path(run_dir[: -len(given_output)] or ".")] if run_dir.endswith(given_output) else [])
    for key in ("validation_file", "train_file"):
        if given := settings.get(key):
            for root in roots:
                if (root / given).is_file():
                    return root / given
    return None


def check_int8(export_dir: Path, config, tokenizer, rows: CheckRows, reference: np.ndarray) -> Int8Check:
    """Label agreement and largest probability difference of the int8 file against ``reference`` (torch fp32
    on ``rows``), how many of the labels it changed were near ties, both accuracies where the rows have gold
    labels, and its examples/s against onnxruntime fp32's: both timed twice, in turn, in this process, the
    faster pass of each kept (other load on the machine slows a pass, never speeds it up). Not judged here."""
    from .evaluation import predict_proba

    texts = rows.texts
    engines = {
        name: OnnxClassifier(export_dir / file, config) for name, file in (("fp32", ONNX_FILE), ("int8", INT8_FILE))
    }
    rates: dict[str, list[float]] = {name: [] for name in engines}
    probs = {}
    for _ in range(2):
        for name, engine in engines.items():
            started = time.perf_counter()
            probs[name] = predict_proba(engine, tokenizer, texts, CHECK_BATCH_SIZE, bf16=False, progress=False)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    fp32_labels, int8_labels = reference.argmax(1), probs["int8"].argmax(1)
    flipped = fp32_labels != int8_labels
    top_two = np.sort(reference, axis=1)[:, -2:]
    near_tie = (top_two[:, 1] - top_two[:, 0]) < NEAR_TIE
    labelled = np.array([label is not None for label in rows.labels], dtype=bool)
    gold = np.array([-1 if label is None else label for label in rows.labels])
    correct = {"fp32": int((fp32_labels == gold).sum()), "int8": int((int8_labels == gold).sum())}
    # in percent of the labelled rows, from the counts: one row of 200 moves accuracy by 0.5 points exactly
    percent = (lambda count: round(100 * count / int(labelled.sum()), 2)) if labelled.any() else (lambda count: None)
    fp32_rate, int8_rate = max(rates["fp32"]), max(rates["int8"])
    return Int8Check(
        quantization=INT8_CONFIG.name,
        description=INT8_CONFIG.describe(),
        rows=len(texts),
        rows_source=rows.source,
        labels_agreeing=int((~flipped).sum()),
        agreement=round(float((~flipped).mean()), 4),
        max_abs_prob_diff=round(float(np.abs(probs["int8"] - reference).max()), 4),
        batch_size=CHECK_BATCH_SIZE,
        fp32_examples_per_s=round(fp32_rate, 2),
        int8_examples_per_s=round(int8_rate, 2),
        speedup=round(int8_rate / fp32_rate, 2),
        flipped_near_ties=int((flipped & near_tie).sum()),
        labelled_rows=int(labelled.sum()),
        fp32_accuracy=percent(correct["fp32"]),
        int8_accuracy=percent(correct["int8"]),
        accuracy_change=percent(correct["int8"] - correct["fp32"]),
    )


def refusal_line(check: dict, directory: str | Path) -> str:
    """The one line ``dhrd export`` ends with where the int8 file was not kept: why, what is there instead, and
    how to keep the file anyway."""
    flags = []
    if "--int8_min_agreement" in check["verdict"]:
        flags.append("--int8_min_agreement 0")
    if "--int8_max_accuracy_change" in check["verdict"]:
        flags.append("--int8_max_accuracy_change 100")
    return (
        f"{INT8_FILE} not kept: {check['verdict']}. {Path(directory) / ONNX_FILE} is exported whole; to keep the "
        f"int8 file anyway, export again with {' '.join(flags)}"
    )


def int8_check_line(check: dict) -> str:
    """What ``dhrd export`` prints of an ``Int8Check``: agreement (and how many of the labels it changed were
    near ties), accuracy where the rows have labels, probability difference and speed-up."""
    flipped = check["rows"] - check["labels_agreeing"]
    line = (
        f"int8 ({check['description']}): torch fp32's label on {check['labels_agreeing']}/{check['rows']} rows "
        f"({check['agreement']:.1%}) of {check['rows_source']}"
    )
    if flipped and "flipped_near_ties" in check:  # an export made before dhrd counted them has no count
        line += (
            f" ({flipped} flipped, {check['flipped_near_ties']} of them near ties: torch fp32's top two classes "
            f"under {check['near_tie_margin']:g} apart)"
        )
    if check.get("accuracy_change") is not None:
        line += (
            f", accuracy {check['fp32_accuracy']:.1f} -> {check['int8_accuracy']:.1f} "
            f"({check['accuracy_change']:+.1f} points) on its {check['labelled_rows']} labelled rows"
        )
    elif not builtin_rows(check) and "labelled_rows" in check:
        line += ", no gold labels in these rows: accuracy not checked"
    line += (
        f", largest probability difference {check['max_abs_prob_diff']:.2g}; {check['speedup']:.2f}x onnxruntime "
        f"fp32's examples/s at batch {check['batch_size']} ({check['int8_examples_per_s']:.1f} against "
        f"{check['fp32_examples_per_s']:.1f}, timed side by side here)"
    )
    if builtin_rows(check):
        line += (
            f". {check['rows']} rows are no real check, so the bar (--int8_min_agreement) is not judged and the "
            "file is kept: pass --check-file <rows in the model's columns>"
        )
    return line
