"""A run's parts prepared from its arguments, in named steps (``prepare_parts``): what DHRDTrainer is built from,
and what scoring and saving need afterwards (``PreparedRun``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.inputs import ClassificationCollator, DataSpec
from ..errors import DHRDInputError
from ..modeling import check_causal_lm, load_tokenizer, resolve_backbone, with_pad_token
from .callbacks import EarlyStopping, MemoryCallback, RunClock, SaveEveryNSteps
from .class_weights import class_weight_values
from .epoch_metrics import run_metrics
from .model_setup import model_builder, reasoning_head
from .run_rows import RunRows, encode_rows, read_rows
from .training_args import DHRDTrainingArguments, strategy_name

if TYPE_CHECKING:  # the trainer module builds on this one
    from .trainer import DHRDTrainer


@dataclass
class PreparedRun:
    """Everything a DHRDTrainer is built from, and what scoring and saving need afterwards."""

    trainer: DHRDTrainer | None
    tokenizer: object
    train_rows: list
    eval_rows: list
    input_format: str
    rows_without_rationale: int
    label_names: tuple[str, ...] = ()
    args: DHRDTrainingArguments | None = None  # the run's settings (its output_dir is the run directory)
    peft_config: str | None = None  # a fingerprint of a given peft config (run identity), None: the built-in LoRA
    model_parts: object = None  # (args) -> (model, classifier, causal LM), freshly initialised
    validation_split: dict | None = None  # where a validation split carved from the training file came from
    spec: DataSpec | None = None  # where the rows came from and how they are read (columns, label names)
    rows: RunRows | None = None
    # Trainer's inputs: the model, its copy of the arguments, the encoded sets, collator, metrics and callbacks
    model: object = None
    trainer_args: DHRDTrainingArguments | None = None
    train_set: list | None = None
    eval_set: list | None = None
    collator: object = None
    compute_metrics: object = None
    callbacks: list | None = None
    # the loss's: () -> the reasoning head's weight, and the classification loss's class weights
    reasoning_weight: object = None
    class_weights: list[float] | None = None

    def trainer_inputs(self) -> dict:
        return dict(
            model=self.model,
            args=self.trainer_args,
            train_dataset=self.train_set,
            eval_dataset=self.eval_set,
            data_collator=self.collator,
            compute_metrics=self.compute_metrics,
            callbacks=self.callbacks or None,
        )

    def release(self) -> None:
        """Drop the model, the data and the trainer: they refer to each other, and would otherwise live until
        the next cyclic collection (a process running cells one after another grew)."""
        self.trainer = self.model = self.model_parts = self.train_set = self.eval_set = None
        self.reasoning_weight = self.compute_metrics = self.callbacks = None


def prepare_parts(
    args: DHRDTrainingArguments,
    *,
    model=None,
    train_dataset=None,
    eval_dataset=None,
    rationales=None,
    peft_config=None,
    callbacks=None,
    compute_metrics=None,
    collator=None,
    tokenizer=None,
    trainer_overrides: dict | None = None,
) -> PreparedRun:
    """Everything a DHRDTrainer is built from, and what scoring and saving need, in steps: the arguments, the
    rows, the tokenizer, the encoded rows, the model, the metrics and the callbacks. ``model`` is a backbone's
    name or a loaded causal LM; ``tokenizer`` replaces the backbone's own."""
    if not isinstance(args, DHRDTrainingArguments):
        raise DHRDInputError(f"args: a DHRDTrainingArguments, not a {type(args).__name__}")
    splits = in_memory_splits(train_dataset, eval_dataset)
    given_lm = None if model is None or isinstance(model, str | Path) else model
    args, given_rationales = resolve_inputs(args, model, splits, rationales)
    args.validate()
    rows = read_rows(args, splits)
    backbone, tokenizer = run_tokenizer(args, given_lm, tokenizer)
    encoded = encode_rows(args, rows, tokenizer, given_rationales)
    model_parts = model_builder(args, rows.spec, backbone, rows.label_names, tokenizer, given_lm, peft_config)
    model, classifier, causal_lm = model_parts()
    memory = MemoryCallback()
    memory.loaded()
    class_weights = class_weight_values(args.class_weights, rows.train_rows, rows.label_names, rows.input_format)
    metric_key, dhrd_metrics = run_metrics(args, rows, compute_metrics)
    overrides = {"metric_for_best_model": metric_key} if args.choose_best else {}
    return PreparedRun(
        trainer=None,  # the DHRDTrainer built from it
        tokenizer=tokenizer,
        train_rows=rows.train_rows,
        eval_rows=rows.eval_rows,
        input_format=rows.input_format,
        rows_without_rationale=encoded.rows_without_rationale,
        label_names=rows.label_names,
        args=args,
        peft_config=peft_fingerprint(peft_config),
        model_parts=model_parts,
        validation_split=rows.validation_split,
        spec=rows.spec,
        rows=rows,
        model=model,
        trainer_args=args.trainer_arguments(**{**overrides, **(trainer_overrides or {})}),
        train_set=encoded.train_set,
        eval_set=encoded.eval_set,
        collator=collator or ClassificationCollator(tokenizer.pad_token_id),
        compute_metrics=dhrd_metrics,
        callbacks=run_callbacks(args, callbacks, memory),
        reasoning_weight=reasoning_head(classifier, causal_lm),
        class_weights=class_weights,
    )


def in_memory_splits(train_dataset, eval_dataset) -> dict | None:
    """``datasets.Dataset`` objects handed to DHRDTrainer, by split; None when the data comes from ``args``."""
    if train_dataset is None and eval_dataset is None:
        return None
    import datasets

    for name, given in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        if given is None:
            raise DHRDInputError(f"{name} is missing: DHRD needs both a training and a validation dataset")
        if not isinstance(given, datasets.Dataset):
            raise DHRDInputError(f"{name}: expected a datasets.Dataset, not a {type(given).__name__}")
    return {"train": train_dataset, "validation": eval_dataset}


def resolve_inputs(args: DHRDTrainingArguments, model, splits: dict | None, rationales):
    """``args`` with what DHRDTrainer's own arguments say: the backbone named by ``model`` (a name, or the
    name a loaded causal LM was loaded from), and a
    ``rationales`` string as a column of the training dataset or a rationale file. Returns the arguments and
    a rationale mapping (row id -> text) where one was given."""
    changes = {}
    if isinstance(model, str | Path):
        changes["backbone"] = str(model)
    elif model is not None:
        # a loaded causal LM: the run and the saved model name it by what it was loaded from
        name = check_causal_lm(model)
        if not name:
            raise DHRDInputError(
                "model: a causal LM built from a config has no name to save it under; save it with "
                "save_pretrained and pass its directory"
            )
        changes.update(backbone=name, gguf_file=None)
    mapping = None
    if isinstance(rationales, Mapping):
        mapping = dict(rationales)
    elif rationales is not None:
        columns = splits["train"].column_names if splits else []
        changes["rationale_column" if str(rationales) in columns else "rationales"] = str(rationales)
    return (dataclasses.replace(args, **changes) if changes else args), mapping


def load_given_tokenizer(backbone: str, trust_remote_code: bool, given_model: bool):
    """The backbone's tokenizer; for a loaded model whose folder holds none, a one-line error that says
    how to hand one over."""
    try:
        return load_tokenizer(backbone, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as error:
        if not given_model:
            raise
        raise DHRDInputError(
            f"model: no tokenizer loads from {backbone!r} ({type(error).__name__}); pass processing_class=<tokenizer>"
        ) from None


def run_tokenizer(args: DHRDTrainingArguments, given_lm=None, tokenizer=None) -> tuple[str, object]:
    """The backbone (resolved and converted where it is a name or .gguf) and its tokenizer, with a pad token;
    ``tokenizer``: the caller's in place of the backbone's own."""
    if given_lm is None:
        backbone = resolve_backbone(args.backbone, args.gguf_file, trust_remote_code=args.trust_remote_code)
    else:
        backbone = args.backbone  # loaded already: nothing to resolve or convert
    if tokenizer is None:
        tokenizer = load_given_tokenizer(backbone, args.trust_remote_code, given_lm is not None)
    return backbone, with_pad_token(tokenizer)


def run_callbacks(args: DHRDTrainingArguments, callbacks, memory: MemoryCallback) -> list:
    """The caller's callbacks, then the run's: memory, the clock, step checkpoints and early stopping where asked."""
    callbacks = [*(callbacks or []), memory, RunClock()]
    if args.save_steps and strategy_name(args.save_strategy) == "epoch":
        callbacks.append(SaveEveryNSteps(int(args.save_steps)))
    if args.early_stopping_patience:
        callbacks.append(EarlyStopping(early_stopping_patience=args.early_stopping_patience))
    return callbacks


def peft_fingerprint(peft_config) -> str | None:
    """A given peft config as run identity: resuming a checkpoint under another one would mix two runs."""
    if peft_config is None:
        return None

    def plain(value):  # sets (target_modules) in a stable order, anything else as text
        return sorted(map(str, value)) if isinstance(value, set) else str(value)

    settings = json.dumps(peft_config.to_dict(), sort_keys=True, default=plain)
    return hashlib.sha256(settings.encode()).hexdigest()[:16]
