"""Which engine runs a trained classifier at inference: torch (the saved model) or onnxruntime (an ONNX export).

Both give ``(model, tokenizer)`` that ``dhrd.inference.evaluation.predict_proba`` accepts, so prediction and evaluation
run the same code on either; only where the model comes from differs.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DHRDInputError

ENGINES = ("torch", "onnxruntime")


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise DHRDInputError(f"unknown engine {engine!r}: choose {' or '.join(ENGINES)}")
    return engine


def load_inference_model(
    path: str | Path, engine: str = "torch", trust_remote_code: bool = False, compile: bool = False
):
    """(model, tokenizer) for ``engine``: a trained model or run directory for torch; an export directory (its
    ``model.onnx``) or one of its ``.onnx`` files (``model.int8.onnx``) for onnxruntime."""
    from .onnx_engine import is_onnx_export

    if check_engine(engine) == "onnxruntime":
        if compile:
            raise DHRDInputError("--compile is for --engine torch (onnxruntime optimises the graph itself)")
        from .onnx_engine import load_onnx_classifier

        return load_onnx_classifier(path, trust_remote_code=trust_remote_code)
    from ..modeling import load_classifier

    if is_onnx_export(path):
        raise DHRDInputError(f"{path}: an ONNX export, not a torch model: pass --engine onnxruntime")
    return load_classifier(path, trust_remote_code=trust_remote_code)


def model_file(path: str | Path, engine: str = "torch") -> Path:
    """The file that identifies the model an engine runs (its path and time stamp key resumable predictions):
    the saved model's ``config.json`` for torch, the ``.onnx`` file for onnxruntime."""
    if check_engine(engine) == "onnxruntime":
        from .onnx_engine import find_export

        return find_export(path)
    from ..modeling import find_model_dir

    return find_model_dir(path) / "config.json"


__all__ = ["ENGINES", "check_engine", "load_inference_model", "model_file"]
