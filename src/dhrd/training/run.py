"""Training: the arguments dataclass, a Trainer whose loss is the paper's weighted sum, and ``train()``.

The pooled baseline is the case ``alpha = 0``: only the classification cross-entropy (times ``beta``).
Everything else (loop, schedule, bf16 autocast, checkpoints, resume, best-model selection) is transformers'
Trainer; LoRA is peft.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback
from transformers.pytorch_utils import Conv1D
from transformers.trainer_pt_utils import LengthGroupedSampler

from ..checks import training_options
from ..data.datasets_input import DatasetSplit
from ..data.inputs import (
    ClassificationCollator,
    DataSpec,
    add_reasoning_targets,
    bare_numbers,
    encode_examples,
    file_rationales,
    load_file_examples,
    parse_label_map,
)
from ..data.rationales import check_rationale_keys, pair_rationales, rationale_file, read_rationale_rows
from ..data.tables import id_key
from ..data.tasks import (
    OWN_DATA,
    TASKS,
    Task,
    carve_split,
    chooses_candidate,
    evaluate_rows,
    flatten_metrics,
    sample_examples,
)
from ..errors import DHRDInputError
from ..hub import push, push_trained, trained_repo_id, write_model_card
from ..inference.class_report import class_report, confusion_png_path, flat_class_metrics, save_confusion_png
from ..inference.evaluation import predict_proba
from ..memory import (
    ActivationBudget,
    activation_budget_for,
    peak_rss_gb,
    pin_mmap_threshold,
    release_memory,
    reset_peak,
    rss_gb,
)
from ..modeling import (
    backbone_source,
    build_classifier,
    check_causal_lm,
    load_tokenizer,
    resolve_backbone,
    save_classifier,
    save_reasoning_head,
    with_pad_token,
)
from ..progress import use_log_lines
from ..provenance import provenance
from ..runtime import write_json_atomic
from .dropout import use_bits_dropout
from .lm_loss import linear_cross_entropy_sum
from .sampling import SeedableLengthGroupedSampler
from .training_args import (
    DEFAULT_VALIDATION_FRACTION,
    DHRDTrainingArguments,
    run_defining,
    saved_value,
    strategy_name,
)

logger = logging.getLogger(__name__)


def evaluations_without_improvement(history: list[dict], metric: str, greater_is_better: bool) -> int:
    """How many validation passes since ``metric`` last improved, counted as EarlyStoppingCallback counts
    (a tie is no improvement), over a run's ``log_history``."""
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    best, count = None, 0
    for value in (h[key] for h in history if key in h):
        if best is None or (value > best if greater_is_better else value < best):
            best, count = value, 0
        else:
            count += 1
    return count


class EarlyStopping(EarlyStoppingCallback):
    """transformers' early stopping, whose count of epochs without improvement is recounted from the run's
    history whenever training (re)starts: a resumed run stops where an unbroken one with the same patience
    would (Trainer does not restore a callback's own state by default)."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self.early_stopping_patience_counter = evaluations_without_improvement(
            state.log_history, args.metric_for_best_model, args.greater_is_better
        )


class SaveEveryNSteps(TrainerCallback):
    """Resume checkpoints between epoch checkpoints, so a kill loses at most ``n`` steps."""

    def __init__(self, n: int):
        self.n = n

    def on_step_end(self, args, state, control, **kwargs):
        # Not on an epoch's last step: the epoch-end save (after validation) writes the same checkpoint again,
        # and a kill between the two left a complete-looking checkpoint without that epoch's validation, so
        # the resumed run could pick another best epoch than an unbroken one.
        last_step_of_epoch = state.epoch is not None and abs(state.epoch - round(state.epoch)) < 1e-6
        if self.n and state.global_step % self.n == 0 and not last_step_of_epoch:
            control.should_save = True
        return control


class MemoryCallback(TrainerCallback):
    """Resident memory (GB, ``dhrd.memory``) at the points of a run: after the model is loaded (``loaded``), when
    training begins, after the first optimiser step, at each epoch's end, and the run's peak (since train()'s
    ``reset_peak``). Frees what the epoch left (``release_memory``) before each epoch-end figure."""

    def __init__(self):
        self.record: dict = {"unit": "GB", "peak_rss": None, "rss_after_load": None, "rss_at_train_begin": None}
        self.record.update(rss_after_first_step=None, rss_at_epoch_end=[])

    def loaded(self) -> None:
        self.record["rss_after_load"] = rss_gb()

    def on_train_begin(self, args, state, control, **kwargs):
        self.record["rss_at_train_begin"] = rss_gb()

    def on_step_end(self, args, state, control, **kwargs):
        if self.record["rss_after_first_step"] is None:
            self.record["rss_after_first_step"] = rss_gb()
            self.record["peak_rss_first_step"] = peak_rss_gb()

    def on_epoch_end(self, args, state, control, **kwargs):
        release_memory()
        self.record["rss_at_epoch_end"].append({"epoch": round(state.epoch or 0.0, 3), "rss": rss_gb()})

    def finish(self, budget: ActivationBudget | None = None, budget_gb: float | None = None) -> dict:
        """The record, with the run's peak and what the activation budget did."""
        self.record["peak_rss"] = peak_rss_gb()
        self.record["rss_at_end"] = rss_gb()
        self.record["activation_memory"] = budget_gb
        self.record["most_layers_recomputed"] = None if budget is None else budget.most
        return dict(self.record)


def reasoning_loss_sum(
    weight: torch.Tensor, hidden: torch.Tensor, lm_labels: torch.Tensor, chunked: bool = True, per_example: bool = False
):
    """Sum of next-token cross-entropies over the valid targets, and their count. Only positions with a
    target go through the vocabulary projection (the reasoning head), which saves most of its cost; ``chunked``,
    a chunk of them at a time (``dhrd.training.lm_loss``: the same gradients, in less time and memory). ``per_example``:
    the sum of each row's mean over its own targets, and the number of rows with a target (a long input then
    weighs as much as a short one)."""
    targets = lm_labels[:, 1:]
    valid = targets != -100
    weights = None
    if per_example:
        per_row = valid.sum(1, keepdim=True)
        weights = (1.0 / per_row.clamp(min=1)).expand_as(valid)[valid]
    states, targets = hidden[:, :-1][valid], targets[valid]
    count = (valid.any(1) if per_example else valid).sum()
    if chunked:
        return linear_cross_entropy_sum(states, weight, targets, weights), count
    logits = nn.functional.linear(states.to(weight.dtype), weight)
    losses = nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    return (losses if weights is None else losses * weights).sum(), count


def trained_parameters(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def term_gradient_norms(parameters: list[torch.Tensor], cls_loss: torch.Tensor, lm_loss: torch.Tensor) -> dict:
    """The L2 norm of each loss term's gradient on ``parameters``, the classification gradient's norm on the
    parameters both terms train (``_shared``: the backbone's, not the head's, which the LM loss never reaches),
    and the cosine between the two gradients there (negative: the terms pull the shared weights apart). The
    graph is kept for the step's own backward pass."""
    cls_grads, lm_grads = (
        torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True) for term in (cls_loss, lm_loss)
    )

    def square(g) -> float:
        return 0.0 if g is None else float(g.float().pow(2).sum())

    shared = [i for i, g in enumerate(lm_grads) if g is not None]
    cls_norm, lm_norm = (sum(map(square, grads)) ** 0.5 for grads in (cls_grads, lm_grads))
    shared_norm = sum(square(cls_grads[i]) for i in shared) ** 0.5
    dot = sum(float((cls_grads[i].float() * lm_grads[i].float()).sum()) for i in shared if cls_grads[i] is not None)
    cosine = dot / (shared_norm * lm_norm) if shared_norm and lm_norm else 0.0
    return {
        "grad_norm_cls": cls_norm,
        "grad_norm_cls_shared": shared_norm,
        "grad_norm_lm": lm_norm,
        "grad_cosine": cosine,
    }


# the training log's entries of each term (unweighted) and, with --log-grad-norms, their gradients
LOSS_TERM_KEYS = (
    "loss",
    "loss_cls",
    "loss_lm",
    "grad_norm",
    "grad_norm_cls",
    "grad_norm_cls_shared",
    "grad_norm_lm",
    "grad_cosine",
)


class DHRDTrainer(Trainer):
    """Trainer with the paper's loss, ``beta * L_cls + alpha * L_reason``, from one forward pass.

    ``L_cls`` is the batch-mean cross-entropy of the pooled head; with ``class_weights`` (one per label), the
    weighted cross-entropy (PyTorch's: the mean weighted by each row's class weight). ``L_reason`` is the
    next-token loss of the reasoning head (the backbone's own LM head) averaged over every valid target token
    of the whole optimiser step: all accumulated micro-batches and all processes (``num_items_in_batch``), or with
    ``lm_normalization="example"`` each row's mean over its own tokens averaged over the step's rows.

    Every training log carries the two terms unweighted (``loss_cls``, ``loss_lm``: means over the micro-batches
    since the last log, this process's); with ``log_grad_norms`` also, from the logging step's first
    micro-batch, the norm of each term's gradient on the trained parameters and their cosine (two more backward
    passes a logging step).
    """

    # both terms are normalised over the whole accumulated step here, so Trainer must not divide again
    loss_is_scaled_for_ga = True

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            # a resumed epoch must see the order an unbroken run saw (see dhrd.training.sampling)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return SeedableLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
        return sampler

    def _get_eval_sampler(self, eval_dataset):
        # Validation in file order. Trainer (5.24) groups validation batches by length too when training is
        # length-grouped, and the per-epoch scores (so the best epoch) compared permuted predictions with the
        # rows in order.
        return None if eval_dataset is None else SequentialSampler(eval_dataset)

    def __init__(
        self,
        model=None,
        args=None,
        train_dataset=None,
        eval_dataset=None,
        *,
        rationales=None,
        peft_config=None,
        trainer_overrides: dict | None = None,
        **kwargs,
    ):
        """One way in: DHRD prepares everything from ``args`` (a ``DHRDTrainingArguments``; None: its defaults),
        in the steps of ``prepare_parts``, and the loss's settings (alpha, beta, class weights) are the
        arguments'. ``model`` is a backbone (hub name, directory or .gguf; None: ``args.backbone``) or a loaded
        causal LM (``AutoModelForCausalLM``; ``processing_class`` its tokenizer where its folder has none),
        ``train_dataset`` / ``eval_dataset`` are ``datasets.Dataset`` objects with the columns ``args`` names
        (None: ``args``' task, files or dataset), ``rationales`` a mapping row id -> text, a rationale file or a
        column of ``train_dataset``, ``peft_config`` a peft ``LoraConfig`` in place of the built-in LoRA;
        ``callbacks`` and ``compute_metrics`` (its metrics are logged beside DHRD's) and any other Trainer
        argument reach Trainer. ``trainer_overrides``: TrainingArguments fields set on Trainer's copy of
        ``args`` only (the training benchmark runs without checkpoints or validation)."""
        prepared = prepare_parts(
            args if args is not None else DHRDTrainingArguments(),
            model=model,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            rationales=rationales,
            peft_config=peft_config,
            callbacks=kwargs.pop("callbacks", None),
            compute_metrics=kwargs.pop("compute_metrics", None),
            collator=kwargs.pop("data_collator", None),
            tokenizer=kwargs.pop("processing_class", None),
            trainer_overrides=trainer_overrides,
        )
        self.prepared, prepared.trainer = prepared, self
        super().__init__(**prepared.trainer_inputs(), **kwargs)
        use_log_lines(self)  # its logs as short lines above the bar, not dicts
        self.alpha, self.beta = prepared.args.lm_weight, prepared.args.beta
        weights = prepared.class_weights
        self.class_weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.reasoning_weight = prepared.reasoning_weight  # () -> the LM head's weight (tied or frozen)
        self.model_accepts_loss_kwargs = False  # Trainer must not rescale by the number of processes
        every_layer = bool(self.args.gradient_checkpointing or getattr(self.args, "activation_checkpointing", False))
        self.activation_budget = activation_budget_for(
            self.model, getattr(self.args, "activation_memory", None), every_layer
        )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Trainer's own checkpoints (``_internal_call``) keep the LoRA adapter, which resuming needs. Called by a
        user, it writes the usable classifier: LoRA merged into a copy of the model, saved as ``dhrd.train``
        saves it, so that ``AutoModelForSequenceClassification.from_pretrained`` gets the trained head."""
        model = self.accelerator.unwrap_model(self.model)
        if _internal_call:
            return super().save_model(output_dir, _internal_call)
        if self.is_world_process_zero():
            merged = copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model
            save_classifier(
                merged,
                self.processing_class or self.prepared.tokenizer,
                output_dir or self.args.output_dir,
                max_length=getattr(self.args, "max_length", None),
                truncation=getattr(self.args, "truncation", "error"),
            )
            del merged
        self.accelerator.wait_for_everyone()

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test"):
        """Trainer's ``predict``, also on a raw ``datasets.Dataset``: rows with the text columns the arguments
        name (a label column optional), encoded as the training rows were; an encoded dataset goes through as
        given. ``predictions`` are the classifier's logits, ``label_ids`` the labels where the rows have them."""
        if "input_ids" not in getattr(test_dataset, "column_names", ["input_ids"]):
            test_dataset = self.encode_rows(test_dataset)
        return super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def encode_rows(self, dataset):
        """A raw ``datasets.Dataset`` (the run's text columns, a label column optional) as model inputs."""
        args, spec = self.prepared.args, self.prepared.spec
        if spec is None or not spec.own_data:
            raise DHRDInputError("raw rows are read with the columns of a run on your own data; encode them first")
        columns = spec.columns  # the training rows' columns, and their label names (a ClassLabel's among them)
        labelled = columns.label in dataset.column_names
        rows = load_file_examples(DatasetSplit("predict", None, dataset), columns, self.prepared.label_names, labelled)
        return encode_examples(rows, self.prepared.tokenizer, args.max_length, args.truncation, "test dataset")

    def push_to_hub(self, commit_message=None, blocking=True, token=None, revision=None, private=None, **kwargs):
        """The model ``dhrd.train(trainer=...)`` saved (``<output_dir>/model``, with its card) to the hub, not
        Trainer's checkpoint folder (a LoRA adapter). Returns the repository's URL."""
        args = self.prepared.args
        model_dir = Path(args.output_dir) / "model"
        if not (model_dir / "config.json").is_file():
            raise DHRDInputError(f"{model_dir}: no saved model to push yet; dhrd.train(trainer=trainer) saves it")
        private = args.hub_private_repo if private is None else private
        return push(model_dir, trained_repo_id(args), private=bool(private), token=token or args.hub_token)

    def _per_example_lm(self) -> bool:
        return getattr(self.args, "lm_normalization", "token") == "example"

    def _get_num_items_in_batch(self, batch_samples, device):
        if not self.alpha or not batch_samples or "lm_labels" not in batch_samples[0]:
            return None
        valid = [batch["lm_labels"][:, 1:] != -100 for batch in batch_samples]
        count = sum((v.any(1) if self._per_example_lm() else v).sum() for v in valid).to(device)
        if self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        return count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        lm_labels = inputs.pop("lm_labels", None)
        use_lm = bool(self.alpha) and lm_labels is not None
        if model.training and self.activation_budget is not None and "input_ids" in inputs:
            self.activation_budget.apply(*inputs["input_ids"].shape)  # recompute the layers beyond the budget
        outputs = model(**inputs, return_last_hidden_state=use_lm)
        steps = getattr(self, "current_gradient_accumulation_steps", 1) if model.training else 1
        logits = outputs.logits.float()
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        cls_loss = nn.functional.cross_entropy(logits, labels, weight=weight)
        loss = self.beta * cls_loss / steps
        lm_loss = None
        if use_lm:
            chunked = getattr(self.args, "chunked_lm_loss", True)  # transformers' own TrainingArguments have none
            hidden = outputs.last_hidden_state
            total, count = reasoning_loss_sum(
                self.reasoning_weight(), hidden, lm_labels, chunked, self._per_example_lm()
            )
            lm_loss = total / torch.clamp(torch.as_tensor(count, device=total.device), min=1)  # this micro-batch's
            if num_items_in_batch is not None and model.training:
                # DDP averages gradients over processes: scale so the result is sum / all tokens of the step
                total, count = total * self.accelerator.num_processes, num_items_in_batch
            loss = loss + self.alpha * total / torch.clamp(torch.as_tensor(count, device=total.device), min=1)
        if model.training:
            self._record_terms(model, cls_loss, lm_loss)
        return (loss, outputs) if return_outputs else loss

    def _record_terms(self, model, cls_loss: torch.Tensor, lm_loss: torch.Tensor | None) -> None:
        terms = getattr(self, "_term_sums", None)
        if terms is None:
            terms = self._term_sums = {}
        for key, value in (("loss_cls", cls_loss), ("loss_lm", lm_loss)):
            if value is not None:
                total, n = terms.get(key, (0.0, 0))
                terms[key] = (total + float(value.detach()), n + 1)
        if lm_loss is None or not getattr(self.args, "log_grad_norms", False) or not self._logs_this_step():
            return
        step = self.state.global_step
        if getattr(self, "_norms_step", None) != step:  # the step's first micro-batch
            self._norms_step = step
            self._term_norms = term_gradient_norms(trained_parameters(model), cls_loss, lm_loss)

    def _logs_this_step(self) -> bool:
        """Whether the optimiser step under way ends with a training log (Trainer's own rule)."""
        every = self.state.logging_steps
        if strategy_name(self.args.logging_strategy) != "steps" or not every:
            return False
        return (self.state.global_step + 1) % every == 0 or (
            self.args.logging_first_step and self.state.global_step == 0
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and not any(k.startswith("eval_") for k in logs):  # a training log, not the summary
            for key, (total, n) in (getattr(self, "_term_sums", None) or {}).items():
                logs[key] = total / max(n, 1)
            self._term_sums = {}
            logs.update(getattr(self, "_term_norms", None) or {})
            self._term_norms = None
        super().log(logs, start_time)


def set_training_attention(classifier, attention: str) -> None:
    if attention == "auto":
        attention = "sdpa" if torch.cuda.is_available() else "eager"
    classifier.model.set_attn_implementation(attention)


def lora_target_pattern(backbone: nn.Module) -> str:
    """A regex over every linear projection inside the backbone (attention and MLP), never the head."""
    names = sorted({n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, nn.Linear | Conv1D)})
    return rf"model\..*\.({'|'.join(names)})"


def apply_lora(classifier, args: DHRDTrainingArguments, peft_config=None):
    """The paper's LoRA on every projection, or ``peft_config`` (a peft config) where one is given. The head
    always trains in full: a config that names no ``modules_to_save`` gets the head added, and one without
    ``target_modules`` gets every projection (peft cannot infer them for DHRD's model type)."""
    from peft import LoraConfig, get_peft_model

    if peft_config is None:
        peft_config = LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            bias="none",
            target_modules=lora_target_pattern(classifier.model),
            modules_to_save=["score"],  # the head trains fully and is saved with the adapter
        )
    else:
        peft_config = copy.deepcopy(peft_config)  # the caller's config is left as given
        peft_config.modules_to_save = list(peft_config.modules_to_save or []) + ["score"]
        if not getattr(peft_config, "target_modules", True):
            peft_config.target_modules = lora_target_pattern(classifier.model)
    model = get_peft_model(classifier, peft_config)
    if args.bits_dropout:
        use_bits_dropout(model)  # LoRA's input dropout was a quarter of a CPU training step
    return model


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict
    history: list[dict]
    is_main_process: bool = True


@dataclass
class RunRows:
    """The rows a run trains and validates on, and where they came from (``read_rows``)."""

    spec: DataSpec  # where the rows came from and how they are read (columns, label names)
    label_names: tuple[str, ...]
    all_train_rows: list  # the whole training split, which rationale files are checked against
    train_rows: list
    eval_rows: list
    validation_split: dict | None  # where a validation split carved from the training file came from
    test_rows: list = field(default_factory=list)  # --test-file's: scored once by the kept model

    @property
    def input_format(self) -> str:
        return self.spec.input_format


@dataclass
class EncodedRows:
    train_set: list[dict]  # with the reasoning targets of the rows that have a rationale (--method dhrd)
    eval_set: list[dict]
    rows_without_rationale: int


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


def prepare_run(args: DHRDTrainingArguments, callbacks=None, collator=None, **trainer_overrides) -> PreparedRun:
    """The trainer of ``args`` (data read and encoded, the classifier built, LoRA where asked), with what
    scoring and saving need. ``train`` and the training benchmark (``dhrd benchmark --train``) share it, so the
    benchmark times the real training step. ``trainer_overrides`` are TrainingArguments fields set on the
    trainer's copy of ``args``."""
    return DHRDTrainer(
        args=args, callbacks=callbacks, data_collator=collator, trainer_overrides=trainer_overrides
    ).prepared


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


def read_rows(args: DHRDTrainingArguments, splits: dict | None = None) -> RunRows:
    """The training and validation rows (capped, sampled, or the validation split carved from the training
    rows by --dev-fraction), with their labels checked."""
    spec = args.data_spec(splits)
    spec.validate()
    label_names = spec.label_names()
    if spec.own_data and args.lm_weight and bare_numbers(label_names):
        logger.warning(
            "the labels %s are bare numbers: the reasoning head learns to end with 'Final Answer: %s'. Name them "
            "with --label-names (for example %s)",
            ", ".join(label_names),
            label_names[-1],
            ",".join(f"{n}=<name>" for n in label_names),
        )
    subset_seed = args.seed if args.subset_seed is None else args.subset_seed
    # a dataset is read only as far as the caps need (DHRD checks its rationales against the whole split)
    train_cap = None if args.method == "dhrd" or args.selection == "first" else args.max_train_examples
    all_train_rows = spec.split("train", label_names, train_cap, subset_seed)
    train_rows = sample_examples(all_train_rows, args.max_train_examples, subset_seed, args.selection)
    validation_split = carved_validation_record(spec, label_names, all_train_rows)
    if args.dev_fraction:
        # the validation split is carved from the training rows: the reported split is never read
        train_rows, eval_rows = carve_dev_split(train_rows, args.dev_fraction, subset_seed)
    else:
        eval_rows = sample_examples(
            spec.split("validation", label_names, args.max_eval_examples, subset_seed),
            args.max_eval_examples,
            subset_seed,
        )
    if any(e.label is None for e in train_rows + eval_rows):
        raise DHRDInputError("the train and validation splits must have labels")
    # capped as the validation split is: the same seeded sample of the file every run of a study scores on
    test_rows = spec.split("test", label_names) if spec.test_file else []
    test_rows = sample_examples(test_rows, args.max_eval_examples, subset_seed)
    rows = RunRows(spec, tuple(label_names), all_train_rows, train_rows, eval_rows, validation_split, test_rows)
    return rows


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


def encode_rows(args: DHRDTrainingArguments, rows: RunRows, tokenizer, given_rationales=None) -> EncodedRows:
    """The rows as model inputs under the length policy; with --method dhrd the training rows extended with
    their rationale and answer (the reasoning head's targets)."""
    train_set = encode_examples(rows.train_rows, tokenizer, args.max_length, args.truncation, "train split")
    eval_set = encode_examples(rows.eval_rows, tokenizer, args.max_length, args.truncation, "validation split")
    missing = _add_rationales(
        args,
        rows.spec,
        train_set,
        rows.train_rows,
        rows.all_train_rows,
        tokenizer,
        rows.label_names,
        given_rationales,
    )
    return EncodedRows(train_set, eval_set, missing)


def model_builder(args: DHRDTrainingArguments, spec: DataSpec, backbone: str, label_names, tokenizer, given_lm, peft):
    """() -> a freshly initialised (model, classifier, causal LM); an alpha search builds one per trial."""

    def model_parts(run_args: DHRDTrainingArguments = args):
        model, classifier, causal_lm, _ = build_model(run_args, backbone, label_names, tokenizer, given_lm, peft)
        classifier.config.dhrd = _spec_dict(run_args, spec)
        return model, classifier, causal_lm

    return model_parts


def run_metrics(args: DHRDTrainingArguments, rows: RunRows, compute_metrics=None):
    """The logged name of the metric that chooses the best epoch, and the validation metrics of an epoch: the
    caller's ``compute_metrics`` beside DHRD's, which the best checkpoint and the run's history need."""
    eval_rows, input_format, label_names = rows.eval_rows, rows.input_format, rows.label_names
    metric_key = best_metric_key(args.metric_for_best_model, eval_rows, input_format, label_names)
    if metric_key != "score" and not args.choose_best:
        logger.warning("--metric-for-best-model %s has no effect: no best epoch is chosen", args.metric_for_best_model)

    def dhrd_metrics(prediction) -> dict:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        probs = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), -1).numpy()
        found = validation_metrics(eval_rows, probs, input_format, label_names, wanted=(metric_key,))
        return {**(compute_metrics(prediction) if compute_metrics else {}), **found}

    return metric_key, dhrd_metrics


def run_callbacks(args: DHRDTrainingArguments, callbacks, memory: MemoryCallback) -> list:
    """The caller's callbacks, then the run's: memory, step checkpoints and early stopping where asked."""
    callbacks = [*(callbacks or []), memory]
    if args.save_steps and strategy_name(args.save_strategy) == "epoch":
        callbacks.append(SaveEveryNSteps(int(args.save_steps)))
    if args.early_stopping_patience:
        callbacks.append(EarlyStopping(early_stopping_patience=args.early_stopping_patience))
    return callbacks


VALIDATION_SPLIT_FILE = "validation-split.json"


def carved_validation_record(spec: DataSpec, label_names, train_rows: list) -> dict | None:
    """Where a validation split carved from the training file came from and which rows it holds (their ids),
    so that a run can be reproduced and a resumed one checked to carve the same rows; None for a given one."""
    if not spec.carves_validation:
        return None
    held = spec.carved_splits(tuple(label_names))[1]
    counts = {name: sum(e.label == k for e in held) for k, name in enumerate(label_names)}
    logger.warning(
        "validation split: %d of %d rows of %s (--validation-fraction %g, seeded by --subset-seed %d, stratified: "
        "%s), never trained on; their ids are in %s",
        len(held),
        len(held) + len(train_rows),
        spec.train_file,
        spec.validation_fraction,
        spec.validation_seed,
        ", ".join(f"{n} {name}" for name, n in counts.items()),
        VALIDATION_SPLIT_FILE,
    )
    return {
        "carved_from": spec.train_file,
        "validation_fraction": spec.validation_fraction,
        "seed": spec.validation_seed,
        "keyed_by": spec.id_column or "row number",
        "train_rows": len(train_rows),
        "validation_rows": len(held),
        "validation_labels": counts,
        "validation_ids": [e.source_idx for e in held],
    }


def _record_validation_split(output: Path, record: dict | None, resuming: bool) -> None:
    """Write the carved split's record; a resumed run must have carved the same rows (the file unchanged)."""
    path = output / VALIDATION_SPLIT_FILE
    if record is None:
        return
    if resuming and path.is_file():
        earlier = json.loads(path.read_text())
        if earlier.get("validation_ids") != record["validation_ids"]:
            raise DHRDInputError(
                f"{path}: this run's validation split was carved from other rows than {record['carved_from']} "
                "gives now (has the file changed?); use another --output-dir, or --restart to train again"
            )
    write_json_atomic(path, record)


def build_model(args: DHRDTrainingArguments, backbone: str, label_names, tokenizer, given_lm=None, peft_config=None):
    """The classifier to train (LoRA-wrapped where asked), the classifier itself, the causal LM whose head is
    the reasoning head, and the tokenizer (with a pad token)."""
    classifier, tokenizer, causal_lm = build_classifier(
        backbone,
        label_names,
        args.head,
        args.pooling,
        args.head_dropout,
        seed=args.seed,
        trust_remote_code=args.trust_remote_code,
        causal_lm=given_lm,
        tokenizer=tokenizer,
    )
    if args.gradient_checkpointing:
        classifier.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    set_training_attention(classifier, args.attention)
    lora = args.lora or peft_config is not None
    model = apply_lora(classifier, args, peft_config) if lora else classifier
    return model, classifier, causal_lm, tokenizer


def carve_dev_split(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """The alpha search's seeded, stratified dev split and the rows left to train on (``tasks.carve_split``)."""
    return carve_split(rows, fraction, seed, "--dev-fraction")


def peft_fingerprint(peft_config) -> str | None:
    """A given peft config as run identity: resuming a checkpoint under another one would mix two runs."""
    if peft_config is None:
        return None

    def plain(value):  # sets (target_modules) in a stable order, anything else as text
        return sorted(map(str, value)) if isinstance(value, set) else str(value)

    settings = json.dumps(peft_config.to_dict(), sort_keys=True, default=plain)
    return hashlib.sha256(settings.encode()).hexdigest()[:16]


def class_weight_values(setting, train_rows: list, label_names, input_format: str) -> list[float] | None:
    """One cross-entropy weight per label: ``"balanced"`` is sklearn's ``compute_class_weight`` on the training
    labels (n_rows / (n_labels * rows of the label)); a mapping or ``"name=weight,..."`` names some labels
    (the others weigh 1)."""
    if setting is None:
        return None
    # yes/no rows that are candidates of one example: their Yes/No balance is the encoding's, not the task's classes
    tasks = {e.task for e in train_rows}
    candidates = sorted(t for t in tasks if chooses_candidate(t)) if input_format == "yesno" else []
    if candidates:
        raise DHRDInputError(
            f"--class-weights: {', '.join(candidates)} in the yesno format is one Yes/No row per candidate, whose "
            "balance is the format's, not the task's classes: use --input-format native to weight its classes"
        )
    labels = np.array([e.label for e in train_rows])
    if setting == "balanced":
        absent = [name for k, name in enumerate(label_names) if not (labels == k).any()]
        if absent:
            raise DHRDInputError(f"--class-weights balanced: no training row has the label {', '.join(absent)}")
        weights = compute_class_weight("balanced", classes=np.arange(len(label_names)), y=labels)
        return [round(float(w), 6) for w in weights]
    return _named_weights(setting, label_names)


def _named_weights(setting, label_names) -> list[float]:
    if isinstance(setting, str):
        try:
            setting = {k.strip(): float(v) for k, v in (part.split("=", 1) for part in setting.split(",") if part)}
        except ValueError:
            raise DHRDInputError(
                f"--class-weights {setting!r}: expected 'balanced' or label=weight pairs like "
                f"{label_names[-1]}=2.0,{label_names[0]}=1.0"
            ) from None
    unknown = [name for name in setting if name not in label_names]
    if unknown:
        raise DHRDInputError(
            f"--class-weights: {', '.join(unknown)} is not a label (the labels: {', '.join(label_names)})"
        )
    weights = [float(setting.get(name, 1.0)) for name in label_names]
    if min(weights) < 0 or not sum(weights):
        raise DHRDInputError("--class-weights: weights must be >= 0 and not all 0")
    return weights


def validation_metrics(eval_rows, probs, input_format: str, label_names, wanted=()) -> dict[str, float]:
    """One validation pass as Trainer logs it: the official metrics (``flatten_metrics``), each task's
    macro-F1, and the per-class metrics named in ``wanted`` (``<task>/f1:<label>``; all of them would crowd
    the log of a many-label task)."""
    official = flatten_metrics(evaluate_rows(eval_rows, probs, input_format))
    per_class = flat_class_metrics(class_report(eval_rows, probs, input_format, label_names))
    return {**{k: v for k, v in per_class.items() if k.endswith("/macro_f1") or k in wanted}, **official}


def best_metric_key(name: str, eval_rows, input_format: str, label_names) -> str:
    """The logged name of ``--metric-for-best-model NAME``: ``score`` and ``loss`` as they are, a task's
    metric (``accuracy``, ``macro_f1``, ``f1:<label>``) under its task's name, ``<task>/<metric>`` as given."""
    if name in ("score", "loss"):
        return name
    tasks = list(dict.fromkeys(e.task for e in eval_rows))
    key = name if "/" in name or len(tasks) > 1 else f"{tasks[0]}/{name}"
    uniform = np.full((len(eval_rows), len(label_names)), 1.0 / len(label_names))
    report = class_report(eval_rows, uniform, input_format, label_names)
    flat = flatten_metrics(evaluate_rows(eval_rows, uniform, input_format))
    official = [k for k in flat if "/" in k and not k.endswith(("/examples", "/rows"))]
    official += [f"{task}/macro_f1" for task in tasks if f"{task}/macro_f1" not in official]
    if key in official or key in flat_class_metrics(report):
        return key
    prefix = "" if len(tasks) == 1 else "<task>/"
    names = [k if len(tasks) > 1 else k.split("/", 1)[1] for k in official if len(tasks) > 1 or k[-6:] != "/score"]
    labels = sorted({label for values in report.values() for label in values["labels"]})
    raise DHRDInputError(
        f"--metric-for-best-model {name} is not a validation metric of this run; choose score, loss, "
        f"{', '.join(dict.fromkeys(names))} or {prefix}precision|recall|f1:<label> (labels: {', '.join(labels)})"
    )


def train(args: DHRDTrainingArguments | None = None, *, trainer: DHRDTrainer | None = None) -> TrainResult:
    """Train, keep the best epoch by the validation score, save the classifier and its metrics: the one-call
    path. ``trainer``: a DHRDTrainer built with the Trainer-shaped API (its own datasets, callbacks, ...) to
    run instead of one built from ``args``. A run with the same settings in ``output_dir`` is resumed. With
    ``alpha_search`` (``--alpha auto``), alpha is chosen first on a dev split of the training rows
    (``dhrd.training.tuning``). With ``push_to_hub``, the saved ``model/`` and its card go to the hub at the end (also
    when the run had finished before)."""
    run_args = args if trainer is None else getattr(trainer.prepared, "args", None)
    result = _train_and_save(args, trainer)
    if run_args is not None and run_args.push_to_hub and result.is_main_process:
        push_trained(result.model_dir, run_args)
    return result


def _train_and_save(args: DHRDTrainingArguments | None, trainer: DHRDTrainer | None) -> TrainResult:
    if trainer is None and args is not None:
        training_options(args)  # a bad number or path stops here, before any data or model loads
    if trainer is None and args is not None and args.alpha_search:
        from .tuning import train_with_alpha_search

        return train_with_alpha_search(args)
    if trainer is None and (finished := finished_run(args or DHRDTrainingArguments())) is not None:
        return finished
    pin_mmap_threshold()  # freed activations go back to the system at once (dhrd.memory)
    reset_peak()  # this run's peak, not an earlier run's of the same process
    own_trainer = trainer is None  # built here: nothing outside needs it once the run is saved
    if trainer is None:
        run_parts = prepare_run(args if args is not None else DHRDTrainingArguments())
    else:
        run_parts = trainer.prepared
    args = run_parts.args
    trainer, tokenizer, input_format = run_parts.trainer, run_parts.tokenizer, run_parts.input_format
    train_rows, eval_rows, missing = run_parts.train_rows, run_parts.eval_rows, run_parts.rows_without_rationale
    output = Path(args.output_dir)
    checkpoint = _checkpoint_to_resume(args, output, run_parts.peft_config)
    if trainer.is_world_process_zero():  # one writer: processes sharing one temporary file name would race
        _record_validation_split(output, run_parts.validation_split, checkpoint is not None)
        write_json_atomic(output / "train_args.json", {**args.to_dict(), "peft_config": run_parts.peft_config})
    if checkpoint:
        logger.warning("resuming from %s", checkpoint)
        _stop_if_stopped_early(trainer, checkpoint, args.early_stopping_patience)
    memory = next((c for c in trainer.callback_handler.callbacks if isinstance(c, MemoryCallback)), None)
    start = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - start

    history = [h for h in trainer.state.log_history if "eval_score" in h]
    chosen_by = trainer.args.metric_for_best_model
    shown = chosen_by if chosen_by not in (None, "score") else None  # each epoch's value of the chosen metric
    run = {
        "split": "validation",
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "metric_for_best_model": chosen_by,
        "epochs": [
            {"epoch": h["epoch"], "score": h["eval_score"], **({shown: h.get(f"eval_{shown}")} if shown else {})}
            for h in history
        ],
        "early_stopping_patience": args.early_stopping_patience,
        "stopped_early": bool(args.early_stopping_patience)
        and evaluations_without_improvement(trainer.state.log_history, chosen_by, trainer.args.greater_is_better)
        >= args.early_stopping_patience,
        "class_weights": None
        if trainer.class_weights is None
        else {name: round(w, 6) for name, w in zip(run_parts.label_names, trainer.class_weights.tolist())},
        "train_rows": len(train_rows),
        "rows_without_rationale": missing if args.method == "dhrd" else None,
        "eval_rows": len(eval_rows),
        "validation_split": None
        if run_parts.validation_split is None
        else {
            **{k: v for k, v in run_parts.validation_split.items() if k != "validation_ids"},
            "ids_in": VALIDATION_SPLIT_FILE,
        },
        "processes": trainer.args.world_size,
        "train_seconds": round(train_seconds, 2),
        "train_seconds_per_epoch": round(
            train_output.metrics.get("train_runtime", train_seconds)
            / max(train_output.metrics.get("epoch", args.num_train_epochs), 1e-9),
            2,
        ),
        "resumed_from": checkpoint,
        # each training log's loss terms (and gradient norms with --log-grad-norms), for plots
        "loss_terms": [
            {"step": h["step"], "epoch": h.get("epoch"), **{k: h[k] for k in LOSS_TERM_KEYS if k in h}}
            for h in trainer.state.log_history
            if "loss" in h and "learning_rate" in h
        ],
    }
    # Without the per-epoch validation passes: the figure to compare methods by (their eval cost is equal).
    eval_seconds = sum(h.get("eval_runtime", 0.0) for h in history)
    run["eval_seconds"] = round(eval_seconds, 2)
    run["optimizer_seconds_per_epoch"] = round(
        (train_output.metrics.get("train_runtime", train_seconds) - eval_seconds)
        / max(train_output.metrics.get("epoch", args.num_train_epochs), 1e-9),
        2,
    )
    if trainer.is_world_process_zero():  # one writer; the other processes wait for it
        best = trainer.model.merge_and_unload() if hasattr(trainer.model, "merge_and_unload") else trainer.model
        budget = getattr(trainer, "activation_budget", None)

        def memory_record() -> dict | None:
            return None if memory is None else memory.finish(budget, getattr(args, "activation_memory", None))

        test_rows = run_parts.rows.test_rows if run_parts.rows is not None else []
        _finish(best, tokenizer, eval_rows, input_format, args, output, run, memory_record, test_rows)
        del best
        if args.keep_reasoning_head:
            save_reasoning_head(trainer.reasoning_weight(), output / "model")
    trainer.accelerator.wait_for_everyone()
    metrics = json.loads((output / "metrics.json").read_text())
    main_process = trainer.is_world_process_zero()
    if own_trainer:
        # the run and its trainer refer to each other: the model, its optimiser state and the data would live
        # until the next cyclic collection, and a process running cells one after another (reproduce) grew
        run_parts.release()
    del trainer, run_parts
    release_memory()
    return TrainResult(output / "model", metrics, history, main_process)


PREDICTIONS_FILE = "validation-predictions.json"
TEST_PREDICTIONS_FILE = "test-predictions.json"  # --test-file's

# Settings that change what a checkpoint means: resuming under different ones would mix two runs. Declared on
# the fields (DHRDTrainingArguments: ``_option(run=...)``; transformers' own: TRAINER_RUN_DEFINING).
RUN_DEFINING = run_defining()


def latest_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint that was fully written. Trainer writes ``trainer_state.json`` last, so a
    checkpoint without a readable one was cut by a kill: it is removed, and the one before is used."""
    if not checkpoints.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in checkpoints.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            logger.warning("removing %s: it was cut short by a kill", path)
            shutil.rmtree(path, ignore_errors=True)
    return None


def changed_settings(earlier: dict, args: DHRDTrainingArguments, extra: tuple[str, ...] = ()) -> list[str]:
    """The run-defining settings (``RUN_DEFINING`` and ``extra``) in which ``args`` differ from a run's saved
    ``train_args.json``. A setting the saved run predates counts as its default, the value it trained with."""
    now = args.to_dict()
    keys = (*RUN_DEFINING, *extra)
    changed = [k for k in keys if _setting(k, saved_value(k, earlier)) != _setting(k, now.get(k))]
    if "validation_fraction" in changed and _carved_fraction(earlier) == args.resolved_validation_fraction:
        changed.remove("validation_fraction")  # the default given by name, or left to default: the same split
    if not earlier.get("instruction") and not now.get("instruction"):  # where it goes matters only if there is one
        changed = [k for k in changed if k != "instruction_in_input"]
    if not earlier.get("best_epoch", True) and not now["best_epoch"]:  # no epoch is chosen by it
        changed = [k for k in changed if k != "metric_for_best_model"]
    return changed


def _carved_fraction(saved: dict) -> float | None:
    """The validation fraction a saved run carved (``DHRDTrainingArguments.resolved_validation_fraction``)."""
    if saved.get("validation_fraction") is not None:
        return saved["validation_fraction"]
    own_file = saved.get("train_file") and not saved.get("validation_file") and not saved.get("dataset")
    return DEFAULT_VALIDATION_FRACTION if own_file else None


def _setting(key: str, value):
    """A setting as it trains: label names given as "0=a,1=b" or as a mapping are the same names."""
    if key == "label_map" and value:
        try:
            return parse_label_map(value)
        except DHRDInputError:
            return value
    return strategy_name(value)  # transformers' enums (SchedulerType, OptimizerNames) as their saved names


def finished_run(args: DHRDTrainingArguments) -> TrainResult | None:
    """A run that already finished in ``output_dir`` with these settings (its model, settings and metrics, the
    last written, are there) is left as it is: running the same command again loads nothing and writes nothing,
    so a kill at any moment of it loses nothing. ``--restart`` trains it again."""
    output = Path(args.output_dir)
    files = [output / "metrics.json", output / "model" / "config.json", output / "train_args.json"]
    if not args.resume or not all(path.is_file() for path in files):
        return None
    earlier = json.loads(files[2].read_text())
    if earlier.get("peft_config") is not None or changed_settings(earlier, args):
        return None
    metrics = json.loads(files[0].read_text())
    logger.info("already complete: %s, trained on %s rows (--restart trains again)", output, metrics.get("train_rows"))
    return TrainResult(output / "model", metrics, [])


def _stop_if_stopped_early(trainer: DHRDTrainer, checkpoint: str, patience: int | None) -> None:
    """A checkpoint at which early stopping had stopped the run (a finished run started again, or one killed
    before it saved its model) trains no further: Trainer would otherwise train on to the last epoch."""
    if not patience:
        return
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    args = trainer.args
    if (
        evaluations_without_improvement(state["log_history"], args.metric_for_best_model, args.greater_is_better)
        >= patience
    ):
        args.max_steps = state["global_step"]


def _checkpoint_to_resume(args: DHRDTrainingArguments, output: Path, peft_config: str | None = None) -> str | None:
    """The last checkpoint of an earlier run of the same settings (and the same given peft config, by its
    fingerprint); ``--restart`` removes old checkpoints."""
    checkpoints = output / "checkpoints"
    if not args.resume and checkpoints.is_dir():
        shutil.rmtree(checkpoints)
    output.mkdir(parents=True, exist_ok=True)
    last = latest_complete_checkpoint(checkpoints)
    if last is None:
        return None
    saved = output / "train_args.json"
    earlier = json.loads(saved.read_text()) if saved.is_file() else None
    changed = [] if earlier is None else changed_settings(earlier, args)
    if earlier is not None and earlier.get("peft_config") != peft_config:
        changed.append("peft_config")
    if changed:
        raise DHRDInputError(
            f"{output}: holds a run with other settings ({', '.join(changed)}); use another --output-dir, "
            "or --restart to discard its checkpoints"
        )
    return last


def _finish(
    best,
    tokenizer,
    eval_rows,
    input_format,
    args: DHRDTrainingArguments,
    output: Path,
    run: dict,
    memory=None,
    test_rows=(),
) -> None:
    """Score the best model the way it will be served (``predict_proba``) on the validation rows and the test
    rows (``--test-file``), then save it and its metrics (with ``memory()``'s record of the run's resident
    memory, taken last, and ``provenance``)."""
    best.eval()
    # served as loaded: with the default attention kernel, not training's eager one on a CPU. In bf16 the two
    # differ enough to flip near-ties, and training's score then disagreed with `dhrd evaluate` by an example.
    # A backbone without SDPA is served (and scored) with eager attention.
    try:
        set_training_attention(best, "sdpa")
    except (ValueError, ImportError):
        set_training_attention(best, "eager")
    label_names = [best.config.id2label[i] for i in range(best.config.num_labels)]

    def scored(rows, predictions_file: str, figure: Path) -> dict:
        """Metrics of ``rows``; their per-row probabilities go to ``predictions_file`` (paired comparisons
        with confidence intervals, dhrd reproduce), before the metrics, whose presence marks the run finished."""
        texts = [e.text for e in rows]
        probs = predict_proba(
            best, tokenizer, texts, args.per_device_eval_batch_size, args.max_length, args.truncation, args.bf16
        )
        classes = class_report(rows, probs, input_format, label_names)
        figure = save_confusion_png(classes, figure)
        write_json_atomic(
            output / predictions_file,
            {"ids": [e.id for e in rows], "probs": np.round(np.asarray(probs, dtype=np.float64), 6).tolist()},
        )
        return {**evaluate_rows(rows, probs, input_format), "classes": classes, "confusion_png": str(figure)}

    metrics = {**scored(eval_rows, PREDICTIONS_FILE, confusion_png_path(output / "metrics.json")), **run}
    if test_rows:
        test = scored(test_rows, TEST_PREDICTIONS_FILE, output / "test-confusion.png")
        metrics["test"] = {"file": args.test_file, **test}
    save_classifier(best, tokenizer, output / "model", max_length=args.max_length, truncation=args.truncation)
    write_model_card(output / "model", settings=args.to_dict(), metrics=metrics)
    if memory is not None:
        metrics["memory"] = memory()
    # after the model card: the card is pushed with the model, and the command line holds this machine's paths
    metrics["provenance"] = provenance()
    write_json_atomic(output / "metrics.json", metrics)


def reasoning_head(classifier, causal_lm):
    """The backbone's own LM head, reused. Tied to the embeddings (SmolLM2, Qwen2.5-0.5B) it is read from
    the classifier's embedding matrix, so it trains with it; untied it stays frozen (as under the paper's
    LoRA) and is held outside the saved classifier, so no reasoning-head weight is ever saved."""
    head = causal_lm.get_output_embeddings()
    embeddings = classifier.get_input_embeddings()
    if head.weight is embeddings.weight or head.weight.data_ptr() == embeddings.weight.data_ptr():
        return lambda: embeddings.weight
    frozen = head.weight.detach()
    return lambda: frozen.to(embeddings.weight.device)


def _why_none_paired(by_task: dict[str, dict[str, str]], train_rows) -> str:
    """Where rationales exist but none is for a row this run trains on, the likely reason: the teacher was asked
    about other rows (``dhrd rationales`` chose them with another validation split or sample)."""
    count = sum(len(found) for found in (by_task or {}).values())
    if not count:
        return ""
    return (
        f" ({count} rationales were read, none for the {len(train_rows)} rows this run trains on: make them with "
        "the rows' choice train makes, the same --validation-file or --validation-fraction, --subset-seed and "
        "--max-examples as --max-train-examples)"
    )


def _add_rationales(args, spec, train_set, train_rows, all_train_rows, tokenizer, label_names, given=None) -> int:
    """For ``--method dhrd``: extend the training rows with their rationale and answer. Returns the number
    of rows left without a rationale. ``given``: a mapping row id -> rationale (DHRDTrainer's)."""
    if args.method != "dhrd":
        return 0
    by_task = _given_rationales(given, all_train_rows) if given is not None else None
    by_task = by_task or _load_rationales(args, spec, all_train_rows, label_names)
    paired = pair_rationales(train_rows, by_task, args.rationale_mode, args.seed)
    missing = add_reasoning_targets(
        train_set,
        train_rows,
        tokenizer,
        label_names,
        paired,
        args.max_rationale_tokens,
        args.lm_scope,
        args.rationale_mode,
    )
    if missing == len(train_rows):
        where = f"--rationale-column {spec.rationale_column}" if spec.rationale_column else "--rationales"
        raise DHRDInputError(
            f"no training example has a rationale: check {where}{_why_none_paired(by_task, train_rows)}"
        )
    if missing:
        logger.warning(
            "%d of %d training rows have no rationale: they train the classification head only",
            missing,
            len(train_rows),
        )
    return missing


def _given_rationales(given: dict, all_train_rows: list) -> dict[str, dict]:
    """A mapping row id -> rationale, checked against the training rows' ids (never paired silently with
    the wrong rows): their id column's values, else their 1-based row numbers."""
    known = {id_key(e.source_idx) for e in all_train_rows}
    unknown = [k for k in given if id_key(k) not in known]
    if unknown:
        raise DHRDInputError(
            f"rationales: {len(unknown)} ids are not training rows (first: {unknown[0]!r}); ids are the id "
            "column's values (args.id_column), else the 1-based row numbers"
        )
    tasks = {e.task for e in all_train_rows}
    return {task: {k: v for k, v in given.items() if v} for task in tasks}


def _load_rationales(
    args: DHRDTrainingArguments, spec: DataSpec, all_train_rows: list, label_names: tuple[str, ...]
) -> dict[str, dict[str, str]]:
    """``task -> example id -> rationale``, from the training file's own column or a rationale file whose ids
    are checked against the whole training split (never paired silently with the wrong rows)."""
    if args.rationale_mode == "only_label":
        return {}
    if spec.rationale_column:
        if args.rationales:
            raise DHRDInputError("give --rationale-column or --rationales, not both")
        column = file_rationales(spec.source("train"), spec.columns, spec.rationale_column, spec.encoding)
        return {OWN_DATA.name: column}
    found = {}
    for task in [TASKS[name] for name in spec.tasks] if spec.tasks else [OWN_DATA]:
        path, keyed_by = _rationale_path(args, spec, task)
        rows = read_rationale_rows(path, spec.encoding)
        task_rows = [e for e in all_train_rows if e.task == task.name]
        # rows carved out as the validation split are the file's rows too: checked, never trained on
        held = spec.carved_splits(tuple(label_names))[1] if task.own_data and spec.carves_validation else []
        check_rationale_keys(rows, task_rows + held, label_names, path, keyed_by, spec.columns.label_name)
        held_keys = {str(e.source_idx) for e in held}
        unused = sum(1 for r in rows if r.key in held_keys and r.rationale is not None)
        if unused:
            logger.warning(
                "%s: %d rationales are for rows of the validation split carved from the training file: not used "
                "(dhrd rationales with the same --validation-fraction and --subset-seed asks only about training "
                "rows)",
                path,
                unused,
            )
        found[task.name] = {r.key: r.rationale for r in rows if r.rationale is not None and r.key not in held_keys}
    return found


def _rationale_path(args: DHRDTrainingArguments, spec: DataSpec, task: Task) -> tuple[Path, str]:
    """A task's rationale file, and what its ids are: the user's rows' ids or numbers, or a task's idx."""
    if not task.own_data:
        path = rationale_file(args.rationales, task.name)
        if path is None:
            raise DHRDInputError(
                f"no rationales for task {task.name}: pass --rationales (a file or a folder of "
                "<Task>/train.jsonl), or run the teacher first"
            )
        return path, "the records' idx"
    if not args.rationales:
        raise DHRDInputError(
            "--method dhrd on your own files needs rationales: --rationale-column NAME (a column of the "
            "training file) or --rationales FILE (JSONL with idx and rationale, idx being the row's "
            "--id-column value or its 1-based row number)"
        )
    path = Path(args.rationales)
    if not path.is_file():
        raise DHRDInputError(f"{path}: rationale file not found")
    return path, f"their {spec.id_column!r} column" if spec.id_column else "their 1-based row number"


def _spec_dict(args: DHRDTrainingArguments, spec: DataSpec) -> dict:
    return {
        "data": spec.to_dict(),
        "max_length": args.max_length,
        "truncation": args.truncation,
        "method": args.method,
        "alpha": args.lm_weight,
        "rationale_mode": args.rationale_mode if args.method == "dhrd" else None,
        "beta": args.beta,
        "backbone": backbone_source(args.backbone, args.gguf_file),  # saved as its hub id or name, never a path
    }


__all__ = ["DHRDTrainingArguments", "DHRDTrainer", "PreparedRun", "TrainResult", "prepare_run", "train"]
