"""onnxruntime as an inference engine: an export found and loaded as an ``OnnxClassifier``, which answers as the
torch classifier does where ``predict_proba`` calls it, so prediction and evaluation run unchanged on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import DHRDInputError
from ..hf.configuration_dhrd import DHRDConfig
from ..modeling import load_tokenizer
from .onnx_graph import INPUT_NAMES, METADATA_FILE, ONNX_FILE, OUTPUT_NAME, require_onnxruntime


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
