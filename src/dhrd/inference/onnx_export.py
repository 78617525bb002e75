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
  label agreement with torch fp32 and its speed beside onnxruntime fp32 (``Int8Check``).
- ``config.json`` (the label names in ``id2label``; the training length policy under ``dhrd``), the tokenizer
  files, and ``onnx_export.json``: inputs, output, labels, files, the largest probability difference
  from torch fp32 measured on sample inputs when the export was made, the int8 check under ``int8``, and
  ``provenance`` (``dhrd.provenance``: versions, git commit, machine and command line, without this
  machine's paths).

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig
from transformers.modeling_outputs import SequenceClassifierOutput

from ..checks import input_file
from ..data.inputs import ClassificationCollator
from ..errors import DHRDInputError
from ..hf.configuration_dhrd import DHRDConfig
from ..modeling import find_model_dir, load_classifier, load_tokenizer, run_settings
from ..provenance import provenance
from ..runtime import atomic_directory, write_json_atomic

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
        _fold_weight_transposes(program.model)
        # weights in a sidecar (model.onnx.data), as transformers' exporter saves them: serialising them into the
        # protobuf would hold a second copy of the model in memory, and past 2 GB it cannot be done at all
        program.save(str(path), external_data=True)
    _drop_source_paths(path)
    return path


def _fold_weight_transposes(model) -> None:
    """Fold the constant subgraphs of the traced graph (above all each ``Linear``'s ``Transpose`` of its weight)
    into initializers, and drop what no longer feeds anything. Without it every ``MatMul`` multiplies by a
    computed tensor, and the int8 quantizers, which quantize only a ``MatMul`` whose weight is an initializer,
    leave the whole graph in fp32 without a word. This is the folding step of onnxscript's optimizer alone: its
    pattern rewriter is what costs the time."""
    import onnx_ir.passes.common as common_passes
    from onnxscript.optimizer import fold_constants_ir

    fold_constants_ir(model)
    common_passes.RemoveUnusedNodesPass()(model)
    common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)


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


@dataclass(frozen=True)
class QuantConfig:
    """One way of making the int8 file from the fp32 graph, with onnxruntime's quantizers.

    ``method``: ``dynamic`` (``quantize_dynamic``: int8 weights, activations quantized per batch at run time),
    ``weight_only`` (``MatMulNBitsQuantizer`` with 8 bits: int8 weights in blocks of ``block_size`` along the
    input axis, each block with its own scale) or ``static`` (``quantize_static``, QDQ: activation ranges from
    calibration rows). ``head_fp32`` leaves the classification head (the MLP or linear on the pooled token) in
    fp32; ``op_types`` limits what is quantized (``("MatMul",)`` keeps the embedding Gather in fp32)."""

    name: str
    method: str = "dynamic"
    weight_type: str = "QInt8"  # QInt8 (signed) or QUInt8
    per_channel: bool = False
    reduce_range: bool = False
    head_fp32: bool = False
    op_types: tuple[str, ...] | None = None  # None: the quantizer's own default list
    keep_fp32: tuple[str, ...] = ()  # module names (their ends) left in fp32 too, e.g. "mlp.down_proj"
    block_size: int = 128
    accuracy_level: int | None = None  # MatMulNBits: 4 computes in int8 (activations quantized per block)

    def describe(self) -> str:
        if self.method == "weight_only":
            parts = [f"int8 weights in blocks of {self.block_size}", f"accuracy_level {self.accuracy_level}"]
        else:
            parts = [self.method, self.weight_type, "per-channel" if self.per_channel else "per-tensor"]
            parts += ["reduce_range"] if self.reduce_range else []
            parts += [f"only {'/'.join(self.op_types)}"] if self.op_types else []
        parts += [f"{'/'.join(self.keep_fp32)} fp32"] if self.keep_fp32 else []
        return ", ".join(parts + (["head fp32"] if self.head_fp32 else []))


# The candidates measured by scripts/int8_agreement.py (results/int8-agreement-smollm2-cpu.md). optimum's
# ORTQuantizer presets are these same quantize_dynamic arguments: avx512_vnni = QInt8 per-channel, avx2 = QUInt8
# per-channel (optimum-onnx itself needs transformers < 4.58, so it is not installed beside dhrd).
QUANT_CONFIGS = {
    c.name: c
    for c in (
        QuantConfig("dynamic-s8-tensor"),  # what dhrd shipped before issue 28
        QuantConfig("dynamic-s8-channel", per_channel=True),
        QuantConfig("dynamic-s8-channel-rr", per_channel=True, reduce_range=True),
        QuantConfig("dynamic-u8-channel", weight_type="QUInt8", per_channel=True),
        QuantConfig("dynamic-s8-channel-head32", per_channel=True, head_fp32=True),
        QuantConfig("dynamic-u8-channel-head32", weight_type="QUInt8", per_channel=True, head_fp32=True),
        QuantConfig(
            "dynamic-u8-channel-head32-matmul",
            weight_type="QUInt8",
            per_channel=True,
            head_fp32=True,
            op_types=("MatMul",),
        ),
        # the input of each MLP's down projection is where a Llama's activation outliers are: per-tensor
        # activation scales there cost the others their precision
        QuantConfig("dynamic-s8-channel-keep-down", per_channel=True, head_fp32=True, keep_fp32=("mlp.down_proj",)),
        QuantConfig(
            "dynamic-u8-channel-keep-down",
            weight_type="QUInt8",
            per_channel=True,
            head_fp32=True,
            keep_fp32=("mlp.down_proj",),
        ),
        QuantConfig("weight-only-b128", method="weight_only", head_fp32=True),
        QuantConfig("weight-only-b32", method="weight_only", block_size=32, head_fp32=True),
        QuantConfig("weight-only-b32-acc4", method="weight_only", block_size=32, accuracy_level=4, head_fp32=True),
        # the input of each MLP's down projection again: its weights' int8 error meets the largest activations
        QuantConfig("weight-only-b128-keep-down", method="weight_only", head_fp32=True, keep_fp32=("mlp.down_proj",)),
        QuantConfig("weight-only-b128-acc4", method="weight_only", accuracy_level=4, head_fp32=True),
        QuantConfig(
            "static-s8-channel-head32-matmul", method="static", per_channel=True, head_fp32=True, op_types=("MatMul",)
        ),
    )
}
INT8_CONFIG = QUANT_CONFIGS["weight-only-b128"]  # what --quantize int8 writes (chosen on the measurements)

# The classifier's head, as the exporter names its module (``LogitsOnly.classifier.score``): in a DHRD model and
# in transformers' *ForSequenceClassification alike.
HEAD_SCOPE = "classifier.score"


def head_nodes(path: Path) -> list[str]:
    """Names of the nodes of the classification head in the graph at ``path`` (its Gemm/MatMul on the pooled
    token): found from the module scope the exporter records per node, or from the head's weight names."""
    return scope_nodes(path, (HEAD_SCOPE,), exact=True)


def scope_nodes(path: Path, modules: tuple[str, ...], exact: bool = False) -> list[str]:
    """Names of the nodes the exporter recorded as made inside one of ``modules`` (a module's full name, or
    with ``exact=False`` the end of one: ``mlp.down_proj`` in every layer), or that read their weights."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    names = []
    for node in proto.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        inside = any((f"'{m}'" if exact else f"{m}'") in scopes for m in modules)
        if inside or any(name.startswith(m + ".") for name in node.input for m in modules if exact):
            names.append(node.name)
            # the dynamic quantizer first rewrites each Gemm as a MatMul (and an Add) named after it, and
            # matches the nodes to leave out against the rewritten graph
            names.extend([f"{node.name}_MatMul", f"{node.name}_Add"] if node.op_type == "Gemm" else [])
    return names


@contextlib.contextmanager
def _quiet_root_logger():
    """The quantizer suggests its pre-processing step through the root logger: a stray "WARNING:root:" line in
    the terminal of every export that the user can do nothing about here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(source: Path, target: Path, config: QuantConfig | None = None, calibration=None) -> Path:
    """The int8 graph of ``source`` in ``target`` (weights beside it when they pass protobuf's 2 GB), made as
    ``config`` says (``INT8_CONFIG`` unless given). ``calibration``: batches of inputs, for ``static`` only."""
    config = config or INT8_CONFIG
    exclude = (head_nodes(source) if config.head_fp32 else []) + (
        scope_nodes(source, config.keep_fp32) if config.keep_fp32 else []
    )
    with _quiet_root_logger():
        if config.method == "weight_only":
            _weight_only(source, target, config, exclude)
        elif config.method == "static":
            _static(source, target, config, exclude, calibration)
        else:
            _dynamic(source, target, config, exclude)
    if not quantized_nodes(target):
        raise RuntimeError(f"{target}: the {config.name} quantizer left every weight in fp32 (no int8 node)")
    return target


# The ops onnxruntime's quantizers write in place of an fp32 MatMul/Gather (weight-only, dynamic, static QDQ)
QUANTIZED_OPS = frozenset(
    {
        "MatMulNBits",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "QLinearMatMul",
        "DequantizeLinear",
        "GatherBlockQuantized",
    }
)


def quantized_nodes(path: Path) -> int:
    """How many nodes of the graph in ``path`` compute with int8 weights. A quantizer that finds no weight it
    can take (a weight reached through a ``Transpose`` instead of an initializer) writes an fp32 copy, silently."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(node.op_type in QUANTIZED_OPS for node in graph.node)


def _dynamic(source: Path, target: Path, config: QuantConfig, exclude: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        target,
        weight_type=QuantType[config.weight_type],
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        nodes_to_exclude=exclude,
        op_types_to_quantize=list(config.op_types) if config.op_types else None,
    )


def _weight_only(source: Path, target: Path, config: QuantConfig, exclude: list[str]) -> None:
    import onnx

    # this module calls logging.basicConfig(level=INFO) when imported: on a root logger without a handler yet,
    # that would print every later INFO line of every library in the user's process (a line per node here)
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    finally:
        root.removeHandler(guard)
    logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(source)),
        bits=8,
        block_size=config.block_size,
        is_symmetric=True,
        accuracy_level=config.accuracy_level,
        nodes_to_exclude=exclude,
    )
    quantizer.process()
    # one file while it fits in a protobuf (2 GB): int8 weights are a quarter of the fp32 sidecar's bytes
    sidecar = source.with_name(source.name + ".data")
    large = sidecar.is_file() and sidecar.stat().st_size > 4 * 10**9
    quantizer.model.save_model_to_file(str(target), use_external_data_format=large)


def _static(source: Path, target: Path, config: QuantConfig, exclude: list[str], calibration) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if calibration is None:
        raise DHRDInputError(f"{config.name}: static quantization needs calibration rows")

    class Reader(CalibrationDataReader):
        def __init__(self, batches):
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {name: batch[name].numpy() for name in INPUT_NAMES}

    quantize_static(
        source,
        target,
        Reader(calibration),
        quant_format=QuantFormat.QDQ,
        weight_type=QuantType[config.weight_type],
        activation_type=QuantType.QUInt8,
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        nodes_to_exclude=exclude,
        op_types_to_quantize=list(config.op_types) if config.op_types else None,
        use_external_data_format=True,
    )


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
    int8_check: dict | None = None  # Int8Check as a dict: agreement and speed of the int8 file, where written


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
) -> ExportSummary:
    """Export a trained classifier (a model or run directory) to ``output`` as described in this module's
    docstring, atomically (written beside ``output`` and renamed into place). An export of the same model and
    files already in ``output`` is left as it is, unless ``restart``. With ``quantize``, the int8 file is
    checked against torch fp32 on up to ``CHECK_ROWS`` rows of ``check_file`` (or of the data the run records,
    or the built-in check texts): ``ExportSummary.int8_check``."""
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
    if check_file is not None:
        input_file("--check-file", check_file)
    if not restart and (finished := _finished_export(output, model_dir, quantize)) is not None:
        return finished
    with atomic_directory(output) as tmp:
        classifier, tokenizer = load_classifier(model_dir, trust_remote_code=trust_remote_code)
        config = classifier.config
        check = encode_batch(tokenizer, CHECK_TEXTS)
        expected = torch_probabilities(classifier, check)
        if quantize == "int8":  # the torch fp32 answers the int8 file is held to, before the weights go
            from .evaluation import predict_proba

            rows, rows_source = check_rows(classifier, model_dir, check_file)
            reference = predict_proba(classifier, tokenizer, rows, CHECK_BATCH_SIZE, bf16=False, progress=False)
            classifier.to("cpu")
        files = {"fp32": ONNX_FILE}
        to_onnx(classifier, tokenizer, tmp / ONNX_FILE)
        del classifier  # the quantizer holds a few copies of the graph: the torch weights need not stay too
        gc.collect()
        int8_check = None
        if quantize == "int8":
            files["int8"] = quantize_int8(tmp / ONNX_FILE, tmp / INT8_FILE).name
            int8_check = check_int8(tmp, config, tokenizer, rows, rows_source, reference)
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
            int8_check=asdict(int8_check) if int8_check else None,
        )
        write_json_atomic(tmp / METADATA_FILE, _metadata(summary, model_dir, tmp / ONNX_FILE))
    if diffs["fp32"] > 1e-4:
        logger.warning("the fp32 export differs from torch by up to %.2g in probability", diffs["fp32"])
    summary.seconds = round(time.perf_counter() - started, 1)
    return summary


# ---------------------------------------------------------------------------------------------- int8 check
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
    if quantize == "int8":  # an int8 file of another quantization than today's is made again
        same = same and (metadata.get("int8") or {}).get("quantization") == INT8_CONFIG.name
    if not same or metadata.get("source_stamp") != _source_stamp(model_dir):
        return None
    if not all((output / name).is_file() for name in files.values()):
        return None
    logger.info("already complete: %s, exported from %s (--restart exports it again)", output, model_dir)
    diffs = metadata.get("max_abs_prob_diff_vs_torch_fp32", {})
    return ExportSummary(str(output), files, metadata["labels"], metadata["head"], 0.0, diffs, metadata.get("int8"))


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
