"""DHRDTrainer: transformers' Trainer with the paper's loss, built from a run's prepared parts (``prepare``).

The pooled baseline is the case ``alpha = 0``: only the classification cross-entropy (times ``beta``).
Everything else (loop, schedule, bf16 autocast, checkpoints, resume, best-model selection) is transformers'
Trainer.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import SequentialSampler
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from ..data.datasets_input import DatasetSplit
from ..data.inputs import encode_examples, load_file_examples
from ..errors import DHRDInputError
from ..hub import push, trained_repo_id
from ..memory import activation_budget_for
from ..modeling import save_classifier
from ..progress import use_log_lines
from .loss_terms import reasoning_loss_sum, term_gradient_norms, trained_parameters
from .prepare import PreparedRun, prepare_parts
from .sampling import SeedableLengthGroupedSampler
from .training_args import DHRDTrainingArguments, strategy_name


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
        self.budget_activations(self.model)

    def budget_activations(self, model) -> None:
        """Keep the activations of ``model``'s training steps under ``--activation-memory`` (``dhrd.memory``).
        The budget holds the model's layers: a search trial's fresh model needs its own, and must not keep the
        last trial's layers alive."""
        every_layer = bool(self.args.gradient_checkpointing or getattr(self.args, "activation_checkpointing", False))
        self.activation_budget = activation_budget_for(
            model, getattr(self.args, "activation_memory", None), every_layer
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


def prepare_run(args: DHRDTrainingArguments, callbacks=None, collator=None, **trainer_overrides) -> PreparedRun:
    """The trainer of ``args`` (data read and encoded, the classifier built, LoRA where asked), with what
    scoring and saving need. ``train`` and the training benchmark (``dhrd benchmark --train``) share it, so the
    benchmark times the real training step. ``trainer_overrides`` are TrainingArguments fields set on the
    trainer's copy of ``args``."""
    return DHRDTrainer(
        args=args, callbacks=callbacks, data_collator=collator, trainer_overrides=trainer_overrides
    ).prepared
