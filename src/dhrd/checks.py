"""Option values checked before any model or data loads: a bad number or path is one line naming the option
(exit code 2), not a failure minutes later. Nothing heavy is imported here: the CLI and every command use it
first."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import DHRDInputError, missing_file

# a split is a name (train, validation, a dataset's own), never a path: it names files such as eval-<split>.json
SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def at_least(option: str, value, minimum, unit: str = "") -> None:
    """``value`` (when given) is a number no smaller than ``minimum``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < minimum:
        raise DHRDInputError(f"{option} must be at least {minimum}{unit}, not {value}")


def above(option: str, value, bound) -> None:
    """``value`` (when given) is a number greater than ``bound``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value <= bound:
        raise DHRDInputError(f"{option} must be greater than {bound}, not {value}")


def fraction(option: str, value) -> None:
    """A probability such as a dropout rate: 0 <= value < 1."""
    if value is not None and not (isinstance(value, int | float) and 0 <= value < 1):
        raise DHRDInputError(f"{option} must be at least 0 and below 1, not {value}")


def input_file(option: str, path) -> None:
    """``path`` (when given) is an existing file: a directory or a missing file is named as such."""
    if path is not None and not Path(path).is_file():
        error = missing_file(path)
        raise DHRDInputError(f"{option} {error}")


def input_dir(option: str, path) -> None:
    """``path`` (when given) is an existing directory."""
    if path is None or Path(path).is_dir():
        return
    if Path(path).exists():
        raise DHRDInputError(f"{option} {path}: a file, not a directory")
    raise DHRDInputError(f"{option} {path}: directory not found")


def input_path(option: str, path, what: str = "file") -> None:
    """``path`` (when given) exists, as a file or a directory."""
    if path is not None and not Path(path).exists():
        raise DHRDInputError(f"{option} {path}: {what} not found (nor a folder)")


def output_file(option: str, path) -> None:
    """``path`` can become a file: it is not a directory, and no file stands where its folder would be."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise DHRDInputError(f"{option} {path}: a directory, not a file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DHRDInputError(f"{option} {path}: {parent} is a file, not a directory")
            return


def output_dir(option: str, path) -> None:
    """``path`` can become a directory: no file stands where it or its folder would be."""
    if path is None:
        return
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise DHRDInputError(f"{option} {path}: {folder} is a file, not a directory")
            return


def split_name(value: str) -> None:
    """A split is a plain name (``validation``, ``test``, a dataset's own), never a path."""
    if not SPLIT_NAME.fullmatch(str(value)) or ".." in str(value):
        raise DHRDInputError(f"--split {value!r}: a split's name (train, validation, test), not a path")


def inference_options(batch_size, max_length=None, max_examples=None, data_dir=None, split=None) -> None:
    """What ``evaluate``, ``predict`` and ``explain`` share."""
    at_least("--batch-size", batch_size, 1)
    at_least("--max-length", max_length, 8, " tokens")
    at_least("--max-examples", max_examples, 1)
    input_dir("--data-dir", data_dir)
    if split is not None:
        split_name(split)


def training_options(args) -> None:
    """``dhrd train``'s numbers and paths (``DHRDTrainingArguments``), before any data or model loads."""
    for option, value in (
        ("--batch-size", args.per_device_train_batch_size),
        ("--eval-batch-size", args.per_device_eval_batch_size),
        ("--gradient-accumulation-steps", args.gradient_accumulation_steps),
        ("--lora-r", args.lora_r),
        ("--max-rationale-tokens", args.max_rationale_tokens),
        ("--max-train-examples", args.max_train_examples),
        ("--max-eval-examples", args.max_eval_examples),
    ):
        at_least(option, value, 1)
    for option, value in (("--seed", args.seed), ("--data-seed", args.data_seed), ("--subset-seed", args.subset_seed)):
        at_least(option, value, 0)
    for option, value in (
        ("--lr", args.learning_rate),
        ("--weight-decay", args.weight_decay),
        ("--activation-memory", getattr(args, "activation_memory", 0)),
    ):
        at_least(option, value, 0)
    above("--lora-alpha", args.lora_alpha, 0)
    above("--logging-steps", args.logging_steps, 0)
    above("--save-steps", args.save_steps, 0)
    if args.max_steps is None or args.max_steps <= 0:  # Trainer's -1: the epochs decide
        above("--epochs", args.num_train_epochs, 0)
    fraction("--head-dropout", args.head_dropout)
    fraction("--lora-dropout", args.lora_dropout)
    if args.dataset is None:  # with one, the files are refused as a conflict (DataSpec.validate)
        for option, path in (("--train-file", args.train_file), ("--validation-file", args.validation_file)):
            input_file(option, path)
    input_file("--test-file", args.test_file)
    input_dir("--data-dir", args.data_dir)
    input_path("--rationales", args.rationales, "rationale file")
    output_dir("--output-dir", args.output_dir)


__all__ = [
    "above",
    "at_least",
    "fraction",
    "inference_options",
    "input_dir",
    "input_file",
    "input_path",
    "output_dir",
    "output_file",
    "split_name",
    "training_options",
]
