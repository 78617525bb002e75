"""ONNX export of a trained classifier, and onnxruntime as an inference engine for it.

``dhrd export --format onnx`` writes a self-contained directory that needs neither dhrd nor
``trust_remote_code`` to serve, whichever head the model has (``mlp`` or ``linear``):

- ``model.onnx`` (its weights in ``model.onnx.data``): the classification path only (the reasoning head is
  never run at inference). Inputs ``input_ids`` and ``attention_mask``, int64 ``[batch, sequence]``, both
  axes dynamic; padding may be on either side, the pooled token is found from the mask. Output ``logits``,
  float32 ``[batch, labels]``: a softmax over the last axis gives the probabilities that
  ``dhrd.evaluation.predict_proba`` returns.
- ``model.int8.onnx`` (``--quantize int8``): the same graph with int8 weights (onnxruntime's dynamic
  quantization: weights int8 once, activations quantized on the fly, no calibration data).
- ``config.json`` (the label names in ``id2label``; the training length policy under ``dhrd``), the tokenizer
  files, and ``onnx_export.json``: inputs, output, labels, files, and the largest probability difference
  from torch fp32 measured on sample inputs when the export was made.

The graph comes from ``torch.onnx.export`` (the dynamo exporter), as optimum's and transformers' own exporters
build theirs; ``OnnxClassifier`` runs it in an ``onnxruntime.InferenceSession`` behind the small part of the
torch classifier's interface that ``predict_proba`` uses, so prediction and evaluation run unchanged on it.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig
from transformers.modeling_outputs import SequenceClassifierOutput

from .data import ClassificationCollator
from .errors import DHRDInputError
from .hf.configuration_dhrd import DHRDConfig
from .modeling import find_model_dir, load_classifier, load_tokenizer
from .runtime import atomic_directory, write_json_atomic

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
METADATA_FILE = "onnx_export.json"
FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
# Traced with two rows of different lengths (so that padding is in the graph), then checked on three other rows.
TRACE_TEXTS = ("A short input.", "A somewhat longer input, so that the first row is padded.")
CHECK_TEXTS = (
    "Premise: The cat sat on the mat. Hypothesis: A cat is sitting.",
    "Yes or no?",
    "Three rows, each of another length than the traced ones, check that both axes are dynamic.",
)


def require_onnxruntime():
    """The onnxruntime module, or one line saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise DHRDInputError("onnxruntime is not installed: pip install 'dhrd[onnx]'") from None
    return onnxruntime


class LogitsOnly(nn.Module):
    """The classifier as a function of (input_ids, attention_mask) to float32 logits: what is exported."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits.float()


def encode_batch(tokenizer, texts: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
    """Right-padded input_ids and attention_mask, as dhrd batches its inputs."""
    ids = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    return ClassificationCollator(tokenizer.pad_token_id)([{"input_ids": row} for row in ids])


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter logs a warning per optional op library it cannot find (torchvision) and per axis name."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter_log.setLevel(level)


def to_onnx(classifier: nn.Module, tokenizer, path: Path) -> Path:
    """Trace ``classifier`` into ``path`` with dynamic batch and sequence axes (fp32 weights)."""
    require_onnxruntime()
    module = LogitsOnly(classifier.float().eval()).eval()
    sample = encode_batch(tokenizer, TRACE_TEXTS)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = {name: {0: batch, 1: sequence} for name in INPUT_NAMES}
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (sample["input_ids"], sample["attention_mask"]),
            dynamo=True,
            # onnxscript's rewriter took three quarters of an export (824 of 1,070 s for SmolLM2-135M beside other
            # load, pattern-matching 450,000 candidate rewrites) and bought nothing at serving time: onnxruntime
            # fuses the graph itself when it loads it (same probabilities, batches of 16 no slower, measured side
            # by side), so the graph is saved as traced
            optimize=False,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic,
            verbose=False,
        )
        # weights in a sidecar (model.onnx.data), as transformers' exporter saves them: serialising them into the
        # protobuf would hold a second copy of the model in memory, and past 2 GB it cannot be done at all
        program.save(str(path), external_data=True)
    _drop_source_paths(path)
    return path


# The dynamo exporter records, per node, the Python stack that made it: the absolute paths of this machine's
# source files (torch's, transformers', dhrd's). An export is copied to servers and pushed to the Hub, so they
# stay behind; the node's module path and fx node (also recorded) still say where each op came from.
_MACHINE_SPECIFIC_NODE_METADATA = ("pkg.torch.onnx.stack_trace",)


def _drop_source_paths(path: Path) -> None:
    """Remove the per-node stack traces from the graph in ``path`` (its weights in the sidecar are untouched)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for graph in _graphs(proto):
        for node in graph.node:
            kept = [p for p in node.metadata_props if p.key not in _MACHINE_SPECIFIC_NODE_METADATA]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
    staged = path.with_name(path.name + ".partial")
    onnx.save_model(proto, str(staged))
    staged.replace(path)


def _graphs(proto):
    """The main graph, the graphs nested in its nodes' attributes (If, Loop, Scan), and the local functions."""
    pending = [proto.graph, *proto.functions]
    while pending:
        graph = pending.pop()
        yield graph
        for node in graph.node:
            for attribute in node.attribute:
                pending.extend([attribute.g] if attribute.HasField("g") else [])
                pending.extend(attribute.graphs)


def quantize_int8(source: Path, target: Path) -> Path:
    """int8 weights with onnxruntime's dynamic quantization (MatMul, Gather: the projections and embeddings)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the quantizer suggests its pre-processing step through the root logger: a stray "WARNING:root:" line in
    # the terminal of every export that the user can do nothing about here
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return target


def session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session. Its threads follow torch's (``--threads``, ``OMP_NUM_THREADS``) unless given,
    so that the two engines are compared on the same cores."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_probabilities(onnx_session, batch: dict[str, torch.Tensor]) -> np.ndarray:
    feed = {name: batch[name].cpu().numpy() for name in INPUT_NAMES}
    logits = onnx_session.run([OUTPUT_NAME], feed)[0]
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


def torch_probabilities(classifier: nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.inference_mode():
        logits = classifier(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.softmax(logits.float(), dim=-1).numpy()


# -------------------------------------------------------------------------------------------------- export
@dataclass
class ExportSummary:
    directory: str
    files: dict[str, str]
    labels: list[str]
    head: str
    seconds: float
    max_abs_prob_diff: dict[str, float] = field(default_factory=dict)  # per file, vs torch fp32, on CHECK_TEXTS


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
) -> ExportSummary:
    """Export a trained classifier (a model or run directory) to ``output`` as described in this module's
    docstring, atomically (written beside ``output`` and renamed into place). An export of the same model and
    files already in ``output`` is left as it is, unless ``restart``."""
    if format not in FORMATS:
        raise DHRDInputError(f"unknown export format {format!r}: choose {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise DHRDInputError(f"unknown quantization {quantize!r}: choose {', '.join(QUANTIZATIONS)}")
    require_onnxruntime()
    started = time.perf_counter()
    model_dir = find_model_dir(model_path)
    if is_onnx_export(model_dir):
        raise DHRDInputError(f"{model_dir}: already an ONNX export: give the trained model directory to --model")
    output = Path(output)
    _check_target(output)
    if not restart and (finished := _finished_export(output, model_dir, quantize)) is not None:
        return finished
    with atomic_directory(output) as tmp:
        classifier, tokenizer = load_classifier(model_dir, trust_remote_code=trust_remote_code)
        config = classifier.config
        check = encode_batch(tokenizer, CHECK_TEXTS)
        expected = torch_probabilities(classifier, check)
        files = {"fp32": ONNX_FILE}
        to_onnx(classifier, tokenizer, tmp / ONNX_FILE)
        del classifier  # the quantizer holds a few copies of the graph: the torch weights need not stay too
        gc.collect()
        if quantize == "int8":
            files["int8"] = quantize_int8(tmp / ONNX_FILE, tmp / INT8_FILE).name
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
        )
        write_json_atomic(tmp / METADATA_FILE, _metadata(summary, model_dir, tmp / ONNX_FILE))
    if diffs["fp32"] > 1e-4:
        logger.warning("the fp32 export differs from torch by up to %.2g in probability", diffs["fp32"])
    summary.seconds = round(time.perf_counter() - started, 1)
    return summary


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


def _finished_export(output: Path, model_dir: Path, quantize: str | None) -> ExportSummary | None:
    """The export already in ``output`` where it is this model's, with these files: left as it is."""
    try:
        metadata = json.loads((output / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = {"fp32": ONNX_FILE, **({"int8": INT8_FILE} if quantize == "int8" else {})}
    same = metadata.get("source_model_id") == _source_id(model_dir) and metadata.get("files") == files
    if not same or metadata.get("source_stamp") != _source_stamp(model_dir):
        return None
    if not all((output / name).is_file() for name in files.values()):
        return None
    logger.info("already complete: %s, exported from %s (--restart exports it again)", output, model_dir)
    diffs = metadata.get("max_abs_prob_diff_vs_torch_fp32", {})
    return ExportSummary(str(output), files, metadata["labels"], metadata["head"], 0.0, diffs)


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
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": _ort_version()},
    }


def _ort_version() -> str:
    return require_onnxruntime().__version__


# -------------------------------------------------------------------------------------------------- engine
def find_export(path: str | Path) -> Path:
    """The ``.onnx`` file to run: ``path`` itself, or ``model.onnx`` in an export directory."""
    path = Path(path)
    if path.is_file() and path.suffix == ".onnx":
        onnx_file = path
    elif (path / ONNX_FILE).is_file():
        onnx_file = path / ONNX_FILE
    else:
        raise DHRDInputError(
            f"{path}: no ONNX export here (expected {ONNX_FILE}, or a .onnx file): make one with "
            f"dhrd export --model <trained model> --output {path} --format onnx"
        )
    if not (onnx_file.parent / "config.json").is_file():
        raise DHRDInputError(f"{onnx_file.parent}: no config.json beside {onnx_file.name}: export the model again")
    return onnx_file


def is_onnx_export(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix == ".onnx" or (path / METADATA_FILE).is_file() or (path / ONNX_FILE).is_file()


class OnnxClassifier:
    """An exported classifier on onnxruntime, with the part of the torch classifier's interface that
    ``predict_proba`` uses: ``config``, ``to``/``eval`` (nothing to move) and a call that returns ``.logits``."""

    def __init__(self, path: Path, config, threads: int | None = None):
        self.path = path
        self.config = config
        self.session = session(path, threads)

    def to(self, *args, **kwargs) -> OnnxClassifier:
        return self

    def eval(self) -> OnnxClassifier:
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SequenceClassifierOutput:
        feed = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        logits = self.session.run([OUTPUT_NAME], feed)[0]
        return SequenceClassifierOutput(logits=torch.from_numpy(logits).to(input_ids.device))


def load_export_config(directory: Path):
    """The classifier's config (labels, length policy) as saved beside the graph; its code is never run."""
    model_type = json.loads((directory / "config.json").read_text()).get("model_type")
    if model_type == DHRDConfig.model_type:
        return DHRDConfig.from_pretrained(directory)
    return AutoConfig.from_pretrained(directory, trust_remote_code=False)


def load_onnx_classifier(path: str | Path, trust_remote_code: bool = False, threads: int | None = None):
    """(OnnxClassifier, tokenizer) from an export directory or one of its ``.onnx`` files."""
    onnx_file = find_export(path)
    config = load_export_config(onnx_file.parent)
    return OnnxClassifier(onnx_file, config, threads), load_tokenizer(str(onnx_file.parent), trust_remote_code)


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
