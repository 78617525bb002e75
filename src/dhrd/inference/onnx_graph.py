"""The exported graph: the classifier traced by ``torch.onnx.export`` (the dynamo exporter) into ``model.onnx``,
its constant weight transposes folded (so the int8 quantizers find the weights) and this machine's source paths
removed; and the names of an export's files, inputs and output."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ..data.inputs import ClassificationCollator
from ..errors import DHRDInputError

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
METADATA_FILE = "onnx_export.json"
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
