"""ONNX export of a trained classifier, and onnxruntime as an inference engine for it.

``dhrd export --format onnx`` writes a self-contained directory that needs neither dhrd nor
``trust_remote_code`` to serve, whichever head the model has (``mlp`` or ``linear``):

- ``model.onnx`` (its weights in ``model.onnx.data``): the classification path only (the reasoning head is
  never run at inference). Inputs ``input_ids`` and ``attention_mask``, int64 ``[batch, sequence]``, both
  axes dynamic; padding may be on either side, the pooled token is found from the mask. Output ``logits``,
  float32 ``[batch, labels]``: a softmax over the last axis gives the probabilities that
  ``dhrd.inference.evaluation.predict_proba`` returns.
- ``model.int8.onnx`` (``--quantize int8``): the same graph with int8 weights, made as ``INT8_CONFIG`` says:
  the candidate that kept torch fp32's labels on trained models (scripts/int8_agreement.py,
  results/int8-agreement-smollm2-cpu.md). The export checks it on up to ``CHECK_ROWS`` rows and records its
  label agreement with torch fp32, its accuracy where the rows have labels and its speed beside onnxruntime
  fp32 (``Int8Check``). A file below the bar (``int8_min_agreement``, ``int8_max_accuracy_change``) is not
  kept: the export holds ``model.onnx`` alone, and ``onnx_export.json`` says why (``int8_bar.judge``).
- ``config.json`` (the label names in ``id2label``; the training length policy under ``dhrd``), the tokenizer
  files, and ``onnx_export.json``: inputs, output, labels, files, the largest probability difference
  from torch fp32 measured on sample inputs when the export was made, the int8 check under ``int8``, and
  ``provenance`` (``dhrd.provenance``: versions, git commit, machine and command line, without this
  machine's paths).

The graph comes from ``torch.onnx.export`` (the dynamo exporter), as optimum's and transformers' own exporters
build theirs (``onnx_graph``); ``OnnxClassifier`` (``onnx_engine``) runs it in an ``onnxruntime.InferenceSession``
behind the small part of the torch classifier's interface that ``predict_proba`` uses, so prediction and
evaluation run unchanged on it. The int8 file is made in ``onnx_quantize`` and checked in ``onnx_int8_check``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checks import input_file
from ..errors import DHRDInputError
from ..modeling import find_model_dir, load_classifier
from ..provenance import provenance
from ..runtime import atomic_directory, write_json_atomic
from .int8_bar import INT8_MAX_ACCURACY_CHANGE, INT8_MIN_AGREEMENT, judge
from .onnx_engine import OnnxClassifier, find_export, is_onnx_export, load_onnx_classifier, onnx_probabilities, session
from .onnx_graph import (
    CHECK_TEXTS,
    INPUT_NAMES,
    INT8_FILE,
    METADATA_FILE,
    ONNX_FILE,
    OUTPUT_NAME,
    encode_batch,
    require_onnxruntime,
    to_onnx,
)
from .onnx_int8_check import CHECK_BATCH_SIZE, check_int8, check_rows, refusal_line
from .onnx_quantize import INT8_CONFIG, quantize_int8

logger = logging.getLogger(__name__)

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)


@dataclass
class ExportSummary:
    directory: str
    files: dict[str, str]
    labels: list[str]
    head: str
    seconds: float
    max_abs_prob_diff: dict[str, float] = field(default_factory=dict)  # per file, vs torch fp32, on CHECK_TEXTS
    # Int8Check as a dict, judged: agreement and speed of the int8 file where one was made, and whether it was
    # kept (``kept``, ``verdict``); where it was not, ``files`` has no "int8"
    int8_check: dict | None = None

    @property
    def int8_refused(self) -> bool:
        return bool(self.int8_check) and not self.int8_check.get("kept", True)


def _check_target(output: Path) -> None:
    """An existing ``output`` must be an earlier export (it is replaced), never a folder of other files."""
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not (output / METADATA_FILE).is_file())):
        raise DHRDInputError(f"{output}: exists and is not an ONNX export made by dhrd: choose another --output")


def export_onnx(
    model_path: str | Path,
    output: str | Path,
    format: str = "onnx",
    quantize: str | None = None,
    trust_remote_code: bool = False,
    restart: bool = False,
    check_file: str | Path | None = None,
    int8_min_agreement: float = INT8_MIN_AGREEMENT,
    int8_max_accuracy_change: float | None = INT8_MAX_ACCURACY_CHANGE,
    warn_if_refused: bool = True,
) -> ExportSummary:
    """Export a trained classifier (a model or run directory) to ``output`` as described in this module's
    docstring, atomically (written beside ``output`` and renamed into place). An export of the same model and
    files already in ``output`` is left as it is, unless ``restart``. With ``quantize``, the int8 file is
    checked against torch fp32 on up to ``CHECK_ROWS`` rows of ``check_file`` (or of the data the run records,
    or the built-in check texts): ``ExportSummary.int8_check``. It is kept only where it gives torch fp32's
    label on at least ``int8_min_agreement`` of those rows and moves their accuracy (where they have gold
    labels) by at most ``int8_max_accuracy_change`` points (None: any change); otherwise the export holds the
    fp32 files alone, ``ExportSummary.int8_refused`` is true (the bar is not judged on the built-in texts), and a
    warning says why, unless ``warn_if_refused`` is off (``dhrd export`` ends with that line as its error)."""
    if format not in FORMATS:
        raise DHRDInputError(f"unknown export format {format!r}: choose {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise DHRDInputError(f"unknown quantization {quantize!r}: choose {', '.join(QUANTIZATIONS)}")
    if not int8_min_agreement >= 0:
        raise DHRDInputError(f"--int8-min-agreement {int8_min_agreement}: a fraction of rows, 0.99 for 99%")
    if int8_max_accuracy_change is not None and not int8_max_accuracy_change >= 0:
        raise DHRDInputError(f"--int8-max-accuracy-change {int8_max_accuracy_change}: points, 0 or more")
    bar = {"min_agreement": int8_min_agreement, "max_accuracy_change": int8_max_accuracy_change}
    require_onnxruntime()
    started = time.perf_counter()
    model_dir = find_model_dir(model_path)
    if is_onnx_export(model_dir):
        raise DHRDInputError(f"{model_dir}: already an ONNX export: give the trained model directory to --model")
    output = Path(output)
    _check_target(output)
    if check_file is not None:
        input_file("--check-file", check_file)
    if not restart and (finished := _finished_export(output, model_dir, quantize, bar)) is not None:
        return _warned(finished, warn_if_refused)
    with atomic_directory(output) as tmp:
        classifier, tokenizer = load_classifier(model_dir, trust_remote_code=trust_remote_code)
        config = classifier.config
        check = encode_batch(tokenizer, CHECK_TEXTS)
        expected = torch_probabilities(classifier, check)
        if quantize == "int8":  # the torch fp32 answers the int8 file is held to, before the weights go
            from .evaluation import predict_proba

            rows = check_rows(classifier, model_dir, check_file)
            reference = predict_proba(classifier, tokenizer, rows.texts, CHECK_BATCH_SIZE, bf16=False, progress=False)
            classifier.to("cpu")
        files = {"fp32": ONNX_FILE}
        to_onnx(classifier, tokenizer, tmp / ONNX_FILE)
        del classifier  # the quantizer holds a few copies of the graph: the torch weights need not stay too
        gc.collect()
        int8_check = None
        if quantize == "int8":
            files["int8"] = quantize_int8(tmp / ONNX_FILE, tmp / INT8_FILE).name
            int8_check = judge(asdict(check_int8(tmp, config, tokenizer, rows, reference)), **bar)
            if not int8_check["kept"]:  # never renamed into place: the export holds the fp32 files alone
                for path in (tmp / INT8_FILE, tmp / f"{INT8_FILE}.data"):
                    path.unlink(missing_ok=True)
                del files["int8"]
        diffs = {
            precision: float(np.abs(onnx_probabilities(session(tmp / name), check) - expected).max())
            for precision, name in files.items()
        }
        shutil.copy2(model_dir / "config.json", tmp / "config.json")  # label names and the length policy
        tokenizer.save_pretrained(tmp)
        summary = ExportSummary(
            directory=str(output),
            files=files,
            labels=[config.id2label[i] for i in range(config.num_labels)],
            head=config.head,
            seconds=0.0,
            max_abs_prob_diff={k: round(v, 8) for k, v in diffs.items()},
            int8_check=int8_check,
        )
        write_json_atomic(tmp / METADATA_FILE, _metadata(summary, model_dir, tmp / ONNX_FILE))
    if diffs["fp32"] > 1e-4:
        logger.warning("the fp32 export differs from torch by up to %.2g in probability", diffs["fp32"])
    summary.seconds = round(time.perf_counter() - started, 1)
    return _warned(summary, warn_if_refused)


def _warned(summary: ExportSummary, warn: bool) -> ExportSummary:
    """A caller from Python learns of a refused int8 file from the log too, not only from ``int8_refused``."""
    if warn and summary.int8_refused:
        logger.warning(refusal_line(summary.int8_check, summary.directory))
    return summary


def torch_probabilities(classifier: nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.inference_mode():
        logits = classifier(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.softmax(logits.float(), dim=-1).numpy()


def _source_stamp(model_dir: Path) -> dict[str, int]:
    """What identifies the exported model's version: the time stamps of its config and weights (a model is
    saved whole, so a retrained one has new ones; an evaluation's JSON beside them changes nothing)."""
    files = [model_dir / "config.json", *sorted(model_dir.glob("*.safetensors"))]
    return {path.name: path.stat().st_mtime_ns for path in files if path.is_file()}


def _source_id(model_dir: Path) -> str:
    """Which model folder the export came from, without writing this machine's absolute path into the export
    (it is copied to servers and pushed): a digest of the resolved path, enough to tell a rerun of the same
    export from another model's."""
    return hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]


def _finished_export(output: Path, model_dir: Path, quantize: str | None, bar: dict) -> ExportSummary | None:
    """The export already in ``output`` where it is this model's, with these files: left as it is. Its recorded
    int8 check is judged again against today's ``bar``: an int8 file the bar no longer keeps, or one an earlier
    bar did not keep and today's would, is made again (the export is replaced whole)."""
    try:
        metadata = json.loads((output / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    int8 = None
    if quantize == "int8":  # an int8 file of another quantization than today's is made again
        if (metadata.get("int8") or {}).get("quantization") != INT8_CONFIG.name:
            return None
        int8 = judge(metadata["int8"], **bar)
    files = {"fp32": ONNX_FILE, **({"int8": INT8_FILE} if int8 and int8["kept"] else {})}
    same = metadata.get("source_model_id") == _source_id(model_dir) and metadata.get("files") == files
    if not same or metadata.get("source_stamp") != _source_stamp(model_dir):
        return None
    if not all((output / name).is_file() for name in files.values()):
        return None
    logger.info("already complete: %s, exported from %s (--restart exports it again)", output, model_dir)
    if int8 is not None and int8 != metadata["int8"]:  # the same verdict under another bar: recorded as judged
        write_json_atomic(output / METADATA_FILE, {**metadata, "int8": int8})
    diffs = metadata.get("max_abs_prob_diff_vs_torch_fp32", {})
    return ExportSummary(str(output), files, metadata["labels"], metadata["head"], 0.0, diffs, int8)


def _metadata(summary: ExportSummary, model_dir: Path, onnx_path: Path) -> dict:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "format": "onnx",
        "source_model": model_dir.resolve().name,
        "source_model_id": _source_id(model_dir),
        "source_stamp": _source_stamp(model_dir),
        "head": summary.head,
        "files": summary.files,
        "inputs": {name: "int64 [batch, sequence]" for name in INPUT_NAMES},
        "output": {OUTPUT_NAME: "float32 [batch, labels]: softmax over the last axis gives the class probabilities"},
        "labels": summary.labels,
        "opset": opset,
        "max_abs_prob_diff_vs_torch_fp32": summary.max_abs_prob_diff,
        **({"int8": summary.int8_check} if summary.int8_check else {}),
        # portable: the command's paths reduced to their last parts, as source_model above
        "provenance": provenance(portable=True),
    }


__all__ = [
    "ExportSummary",
    "OnnxClassifier",
    "export_onnx",
    "find_export",
    "is_onnx_export",
    "load_onnx_classifier",
    "quantize_int8",
    "to_onnx",
]
