"""The int8 file checked at export (``Int8Check``): its labels against torch fp32's on up to ``CHECK_ROWS`` real
rows, and its speed beside onnxruntime fp32's, timed side by side."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DHRDInputError
from ..modeling import run_settings
from .onnx_engine import OnnxClassifier
from .onnx_graph import CHECK_TEXTS, INT8_FILE, ONNX_FILE
from .onnx_quantize import INT8_CONFIG

logger = logging.getLogger(__name__)


CHECK_ROWS = 200  # rows the int8 file is checked on at export: enough to see a flip rate of 1%, in seconds
CHECK_BATCH_SIZE = 16


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


def check_rows(classifier, model_dir: Path, check_file: str | Path | None) -> tuple[list[str], str]:
    """Up to ``CHECK_ROWS`` input texts to check the int8 file on, and where they come from: ``check_file``
    (read with the model's columns), else the validation split of the model's task or the data file its run
    directory records (``train_args.json``), else the three built-in check texts."""
    from .evaluation import examples_for_model

    if check_file is not None:
        examples, _ = examples_for_model(classifier, None, "test", file=str(check_file), require_labels=False)
        return [e.text for e in examples[:CHECK_ROWS]], Path(check_file).name
    try:
        if (recorded := _recorded_data_file(model_dir)) is not None:
            examples, _ = examples_for_model(classifier, None, "test", file=str(recorded), require_labels=False)
            return [e.text for e in examples[:CHECK_ROWS]], f"{recorded.name}, recorded by the run"
        examples, _ = examples_for_model(classifier, None, "validation")
        tasks = "+".join(dict.fromkeys(e.task for e in examples))
        return [e.text for e in examples[:CHECK_ROWS]], f"{tasks} validation"
    except (DHRDInputError, OSError, ValueError) as error:
        logger.info("no recorded data to check int8 on (%s): the built-in check texts instead", error)
    return list(CHECK_TEXTS), f"the {len(CHECK_TEXTS)} built-in check texts"


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


def check_int8(export_dir: Path, config, tokenizer, rows: list[str], source: str, reference: np.ndarray) -> Int8Check:
    """Label agreement and largest probability difference of the int8 file against ``reference`` (torch fp32
    on ``rows``), and its examples/s against onnxruntime fp32's: both timed twice, in turn, in this process,
    the faster pass of each kept (other load on the machine slows a pass, never speeds it up)."""
    from .evaluation import predict_proba

    engines = {
        name: OnnxClassifier(export_dir / file, config) for name, file in (("fp32", ONNX_FILE), ("int8", INT8_FILE))
    }
    rates: dict[str, list[float]] = {name: [] for name in engines}
    probs = {}
    for _ in range(2):
        for name, engine in engines.items():
            started = time.perf_counter()
            probs[name] = predict_proba(engine, tokenizer, rows, CHECK_BATCH_SIZE, bf16=False, progress=False)
            rates[name].append(len(rows) / (time.perf_counter() - started))
    agreeing = int((probs["int8"].argmax(1) == reference.argmax(1)).sum())
    fp32_rate, int8_rate = max(rates["fp32"]), max(rates["int8"])
    return Int8Check(
        quantization=INT8_CONFIG.name,
        description=INT8_CONFIG.describe(),
        rows=len(rows),
        rows_source=source,
        labels_agreeing=agreeing,
        agreement=round(agreeing / len(rows), 4),
        max_abs_prob_diff=round(float(np.abs(probs["int8"] - reference).max()), 4),
        batch_size=CHECK_BATCH_SIZE,
        fp32_examples_per_s=round(fp32_rate, 2),
        int8_examples_per_s=round(int8_rate, 2),
        speedup=round(int8_rate / fp32_rate, 2),
    )


def int8_check_line(check: dict) -> str:
    """What ``dhrd export`` prints of an ``Int8Check``: agreement, probability difference and speed-up."""
    line = (
        f"int8 ({check['description']}): torch fp32's label on {check['labels_agreeing']}/{check['rows']} rows "
        f"({check['agreement']:.1%}) of {check['rows_source']}, largest probability difference "
        f"{check['max_abs_prob_diff']:.2g}; {check['speedup']:.2f}x onnxruntime fp32's examples/s at batch "
        f"{check['batch_size']} ({check['int8_examples_per_s']:.1f} against {check['fp32_examples_per_s']:.1f}, "
        "timed side by side here)"
    )
    if check["rows_source"].endswith("built-in check texts"):
        line += f". {check['rows']} rows are no real check: pass --check-file <rows in the model's columns>"
    return line
