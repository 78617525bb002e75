"""dhrd: Dual-Head Reasoning Distillation for decoder-only text classifiers."""

from .errors import DHRDInputError
from .evaluation import evaluate, predict_proba
from .modeling import build_classifier, load_classifier, save_classifier
from .prediction import predict
from .provenance import dhrd_version
from .reproduction import ReproduceArguments, make_arguments, reproduce
from .tasks import TASKS, Example, load_task_split
from .training import DHRDTrainer, DHRDTrainingArguments, train

__version__ = dhrd_version()
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
