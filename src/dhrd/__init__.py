"""dhrd: Dual-Head Reasoning Distillation for decoder-only text classifiers.

The public names load on first use (PEP 562): ``import dhrd`` and the command line's help, version and option
errors never import torch or transformers, which take seconds."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ imports each on first use
    from .data.examples import Example
    from .data.task_splits import load_task_split
    from .data.tasks import TASKS
    from .errors import DHRDInputError
    from .inference.evaluation import evaluate, predict_proba
    from .inference.prediction import predict
    from .modeling import build_classifier, load_classifier, save_classifier
    from .reproduction import ReproduceArguments, make_arguments, reproduce
    from .training.run import train
    from .training.trainer import DHRDTrainer
    from .training.training_args import DHRDTrainingArguments

# each public name and the module that defines it
_HOMES = {
    "DHRDInputError": "errors",
    "evaluate": "inference.evaluation",
    "predict_proba": "inference.evaluation",
    "build_classifier": "modeling",
    "load_classifier": "modeling",
    "save_classifier": "modeling",
    "predict": "inference.prediction",
    "ReproduceArguments": "reproduction",
    "make_arguments": "reproduction",
    "reproduce": "reproduction",
    "TASKS": "data.tasks",
    "Example": "data.examples",
    "load_task_split": "data.task_splits",
    "DHRDTrainer": "training.trainer",
    "DHRDTrainingArguments": "training.training_args",
    "train": "training.run",
}
__all__ = [
    "DHRDInputError",
    "DHRDTrainer",
    "DHRDTrainingArguments",
    "Example",
    "ReproduceArguments",
    "TASKS",
    "build_classifier",
    "evaluate",
    "load_classifier",
    "load_task_split",
    "make_arguments",
    "predict",
    "predict_proba",
    "reproduce",
    "save_classifier",
    "train",
]


def __getattr__(name: str):
    if name == "__version__":
        value = importlib.import_module(".provenance", __name__).dhrd_version()
    elif name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__, "__version__"])
