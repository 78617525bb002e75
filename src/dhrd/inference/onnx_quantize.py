"""The int8 file made from the fp32 graph with onnxruntime's quantizers, as a ``QuantConfig`` says: the candidates
measured (``QUANT_CONFIGS``) and the one ``--quantize int8`` writes (``INT8_CONFIG``)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import DHRDInputError
from .onnx_graph import INPUT_NAMES


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
