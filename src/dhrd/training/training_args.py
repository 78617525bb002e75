"""``DHRDTrainingArguments``: transformers' ``TrainingArguments`` with DHRD's own fields, as TRL's ``SFTConfig``
extends it. Every Trainer option works (``report_to``, ``eval_strategy="steps"``, ``max_steps``, ...); the fields
redeclared here carry the paper's defaults (Appendix E), and the settings DHRD needs by default (checkpoints
under ``output_dir/checkpoints``, a validation pass and a checkpoint every epoch with the best one kept) are
defaults resolved in ``__post_init__``, which an explicit value overrides.

Each field's help, choices and command-line aliases are declared once, with the field (``option_fields.option``):
``dhrd train`` is generated from them (``dhrd.training.argparser``). DHRD's own fields come in groups, each a
dataclass of its own that this class inherits: ``data_fields``, ``model_fields``, ``loss_fields``; here are
transformers' fields with DHRD's defaults, the input's length, DHRD's training choices, the defaults resolved
and the checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments

from ..checks import training_options
from ..data.inputs import DEFAULT_VALIDATION_FRACTION, DataSpec
from ..data.lengths import DEFAULT_MAX_LENGTH, TRUNCATIONS
from ..data.tasks import OWN_DATA
from ..errors import DHRDInputError
from ..runtime import bf16_supported
from .data_fields import DataFields
from .loss_fields import LossFields
from .model_fields import ModelFields
from .option_fields import DATA, TRAINING, option


# dataclasses lists the fields of the bases furthest back first: TrainingArguments', then data, model, loss (so the
# groups are listed in reverse here), then this class's own; a field redeclared here keeps TrainingArguments' place
@dataclass
class DHRDTrainingArguments(LossFields, ModelFields, DataFields, TrainingArguments):
    """Everything a run needs. Defaults follow the paper (Appendix E): LoRA r=16, alpha 32, dropout 0.1 on
    every attention and MLP projection, AdamW lr 2e-4, weight decay 0.01, cosine schedule, 5 warm-up steps,
    3 epochs, evaluation and a checkpoint every epoch, the best one kept. ``output_dir`` is the run directory
    (checkpoints/, model/, metrics.json); Trainer's checkpoints go to its ``checkpoints/``."""

    # ---- transformers' fields with DHRD's defaults
    output_dir: str | None = option(
        None,
        "run directory: checkpoints/, model/, metrics.json (None: runs/<task>-<method>)",
        DATA,
        run=False,
    )
    learning_rate: float = option(2e-4, "AdamW's peak learning rate", TRAINING, aliases=["--lr"])
    num_train_epochs: float = option(3.0, "epochs", TRAINING, aliases=["--epochs"])
    per_device_train_batch_size: int = option(8, "training batch size", TRAINING, aliases=["--batch-size"])
    per_device_eval_batch_size: int = option(
        32, "validation batch size", TRAINING, aliases=["--eval-batch-size"], run=False
    )
    gradient_accumulation_steps: int = option(
        1, "micro-batches per optimiser step", TRAINING, aliases=["--gradient-accumulation"]
    )
    warmup_steps: float = option(5, "linear warm-up steps (a ratio if below 1)", TRAINING)
    weight_decay: float = option(0.01, "AdamW's weight decay", TRAINING)
    lr_scheduler_type: str = option("cosine", "learning-rate schedule (transformers' SchedulerType)", TRAINING)
    seed: int = option(42, "seed of the head's initialisation, shuffling, dropout and capped samples", TRAINING)
    bf16: bool | None = option(None, "bf16 autocast (None: where the hardware supports it)", TRAINING, run=False)
    optim: str = option("adamw_torch", "optimiser (transformers' OptimizerNames)", TRAINING)
    save_steps: float | None = option(
        None,
        "with --save-strategy epoch: extra resume checkpoints every N optimiser steps; with steps: "
        "transformers' (None: --eval-steps, else 500)",
        TRAINING,
        run=False,
    )
    save_total_limit: int | None = option(2, "checkpoints kept (the best one always is)", TRAINING, run=False)
    logging_steps: float = option(10, "log the loss every N steps", TRAINING, run=False)
    # 'score' is the task's official score as compute_metrics logs it; see best_metric_key
    metric_for_best_model: str | None = option(
        "score",
        "what the best checkpoint is chosen by: score (the task's official score), loss, accuracy, macro_f1, "
        "any metric the task reports, or a class's precision|recall|f1:<label> (f1:positive); <task>/<name> "
        "in a joint run",
        TRAINING,
    )
    eval_strategy: str | None = option(
        None,
        "validation passes: no, steps or epoch (None: epoch when the best epoch is kept, else no)",
        TRAINING,
        choices=["no", "steps", "epoch"],
        run=False,
    )
    save_strategy: str | None = option(
        None,
        "checkpoints: no, steps, epoch or best (None: as --eval-strategy, epoch without one)",
        TRAINING,
        choices=["no", "steps", "epoch", "best"],
        run=False,
    )
    load_best_model_at_end: bool | None = option(
        None,
        "keep the best checkpoint (None: with --best-epoch and more than one epoch)",
        TRAINING,
        run=False,
    )
    use_cpu: bool | None = option(None, "train on the CPU (None: when there is no GPU)", TRAINING, run=False)
    data_seed: int | None = option(None, "seed of the data sampler (None: --seed)", TRAINING)
    remove_unused_columns: bool = option(False, "drop dataset columns the model does not take", TRAINING, run=False)
    # DHRD's collator always names the labels "labels"; not an option (--label-names is DHRD's label_map)
    label_names: list[str] | None = field(default_factory=lambda: ["labels"], init=False)
    disable_tqdm: bool | None = option(False, "no progress bars", TRAINING, run=False)
    train_sampling_strategy: str | None = option(
        None,
        "sampler: random, sequential, group_by_length or batch_rebalance (None: from --group-by-length)",
        TRAINING,
        choices=["random", "sequential", "group_by_length", "batch_rebalance"],
    )
    # ---- the input's length (declared after the loss fields: the options keep their order)
    max_length: int = option(
        DEFAULT_MAX_LENGTH, "longest input in tokens; longer inputs are an error unless --truncation left", DATA
    )
    truncation: str = option(
        "error", "error, or left: drop the start of long passages", DATA, choices=list(TRUNCATIONS)
    )
    # ---- DHRD's training choices
    # the validation split is also the evaluation split, so choosing on it flatters every score a little
    best_epoch: bool = option(
        True,
        "keep the epoch with the best validation score (the paper's); --last-epoch: the last one, with no "
        "per-epoch validation pass",
        TRAINING,
        negative=["--last-epoch"],
    )
    # A run scored on its test file with no epoch chosen on the validation split would otherwise score the
    # validation split at the end only to leave it unused (dhrd reproduce and dhrd demo: ~21 s a ComVE cell)
    score_validation: bool = option(
        True,
        "score the kept model on the validation split at the end (metrics.json's score, "
        "validation-predictions.json); --skip-validation, with --test-file: the run is scored on its test file "
        "only, and without per-epoch validation (one epoch, or --last-epoch) the validation split is not read",
        TRAINING,
        negative=["--skip-validation"],
        run=False,
    )
    early_stopping_patience: int | None = option(
        None,
        "stop after N validation passes whose --metric-for-best-model is no better",
        TRAINING,
        run=False,
    )
    # transformers' LengthGroupedSampler: far less padding on SuperGLUE's mixed-length inputs
    group_by_length: bool = option(
        True,
        "batches of similar lengths (less padding, faster); --random-batches: shuffled",
        TRAINING,
        negative=["--random-batches"],
    )
    resume: bool = option(
        True,
        "continue from the last checkpoint in --output-dir; --restart: discard it",
        TRAINING,
        negative=["--restart"],
        run=False,
    )

    def __post_init__(self):
        self.resolve_defaults()
        super().__post_init__()

    def resolve_defaults(self) -> None:
        """DHRD's defaults that depend on other fields; an explicit value is kept. Before TrainingArguments'
        own checks, which need bf16, the strategies and the devices settled."""
        if isinstance(self.alpha, str) and self.alpha.strip().lower() == "auto":
            self.alpha, self.alpha_search = None, True
        if self.output_dir is None:
            name = OWN_DATA.name if self.train_file or self.dataset else str(self.task).replace(",", "+")
            self.output_dir = str(Path("runs") / f"{name}-{self.method}")
        choose_best = self.load_best_model_at_end
        if choose_best is None:
            # With one epoch there is no best epoch to choose: the validation pass after it would repeat the
            # final scoring of the saved model, a large share of a short run on a CPU.
            given = self.eval_strategy
            asked = self.num_train_epochs > 1 if given is None else strategy_name(given) != "no"
            choose_best = self.best_epoch and asked
        if self.eval_strategy is None:
            self.eval_strategy = "epoch" if choose_best else "no"
        if self.save_strategy is None:  # checkpoints where validation runs, so the best one can be kept
            validation = strategy_name(self.eval_strategy)
            self.save_strategy = "epoch" if validation == "no" else validation
        if self.load_best_model_at_end is None:
            self.load_best_model_at_end = choose_best
        if self.save_steps is None and strategy_name(self.save_strategy) == "steps":
            self.save_steps = self.eval_steps or 500
        if self.bf16 is None:
            self.bf16 = bf16_supported()
        if self.use_cpu is None:
            self.use_cpu = not torch.cuda.is_available()
        if self.data_seed is None:
            self.data_seed = self.seed
        # under transformers' current name where it has one: the old one warns (FutureWarning) on every run
        current = "activation_checkpointing" if hasattr(self, "activation_checkpointing") else "gradient_checkpointing"
        if self.gradient_checkpointing or getattr(self, current):
            if getattr(self, f"{current}_kwargs") is None and self.gradient_checkpointing_kwargs is None:
                setattr(self, f"{current}_kwargs", {"use_reentrant": False})
        if self.train_sampling_strategy is None:
            self.train_sampling_strategy = "group_by_length" if self.group_by_length else "random"

    def data_spec(self, splits: dict | None = None) -> DataSpec:
        """Where the data comes from; ``splits`` are ``datasets`` datasets given in memory (``DHRDTrainer``)."""
        own = self.train_file is not None or self.dataset is not None or bool(splits)
        return DataSpec(
            tasks=None if own else self.task,
            input_format=self.input_format,
            data_dir=self.data_dir,
            train_file=self.train_file,
            validation_file=self.validation_file,
            test_file=self.test_file,
            text_column=self.text_column,
            text_pair_column=self.text_pair_column,
            label_column=self.label_column,
            id_column=self.id_column,
            rationale_column=self.rationale_column,
            encoding=self.encoding,
            label_map=self.label_map,
            instruction=self.instruction,
            instruction_in_input=self.instruction_in_input,
            dataset=self.dataset,
            dataset_config=self.dataset_config,
            validation_fraction=self.resolved_validation_fraction,
            validation_seed=self.seed if self.subset_seed is None else self.subset_seed,
            splits=splits,
        )

    @property
    def resolved_validation_fraction(self) -> float | None:
        """The fraction of the training file carved out as the validation split: the one given, else
        ``DEFAULT_VALIDATION_FRACTION`` for a training file without a validation file, else none."""
        if self.validation_fraction is not None:
            return self.validation_fraction
        if self.train_file is not None and self.validation_file is None and self.dataset is None:
            return DEFAULT_VALIDATION_FRACTION
        return None

    @property
    def choose_best(self) -> bool:
        """A validation pass every epoch (or ``eval_steps``), and the best checkpoint kept."""
        return bool(self.load_best_model_at_end)

    @property
    def reads_validation(self) -> bool:
        """Whether the validation split is read: scored at the end, or validated on during training (also when
        ``score_validation`` is off); a split carved from the training rows is carved either way."""
        return self.score_validation or strategy_name(self.eval_strategy) != "no"

    @property
    def lm_weight(self) -> float:
        if self.alpha is not None:
            return self.alpha
        return 1.0 if self.method == "dhrd" else 0.0

    def validate(self) -> None:
        training_options(self)  # numbers and paths, before any data or model loads
        for f in dataclasses.fields(self):  # the allowed values its metadata declares, also from Python
            allowed = f.metadata.get("choices")
            value = strategy_name(getattr(self, f.name))
            if allowed and value is not None and value not in allowed:
                flag = "--" + f.name.replace("_", "-")
                what = f"unknown method {value!r}" if f.name == "method" else f"{flag} {value!r}"
                raise DHRDInputError(f"{what}: choose {', '.join(allowed)}")
        if self.method == "pooled" and self.alpha:
            raise DHRDInputError("--method pooled is alpha = 0; use --method dhrd to weight the reasoning loss")
        if self.lm_weight < 0 or self.beta < 0 or self.lm_weight + self.beta == 0:
            raise DHRDInputError("--alpha and --beta must be >= 0 and not both 0")
        if self.dev_fraction is not None and not 0 < self.dev_fraction < 1:
            raise DHRDInputError(f"--dev-fraction must be between 0 and 1, not {self.dev_fraction}")
        if self.alpha_search:
            if self.alpha is not None:
                raise DHRDInputError("--alpha auto chooses alpha: give it or a number, not both")
            self.search_candidates()  # readable
        if not self.score_validation and not self.test_file:
            raise DHRDInputError("--skip-validation needs --test-file: a run is scored on one or the other")
        if self.max_length < 8:
            raise DHRDInputError(f"--max-length {self.max_length} is too short for any input")
        self.check_report_to()
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise DHRDInputError(f"--early-stopping-patience must be >= 1, not {self.early_stopping_patience}")
            if not self.choose_best:
                raise DHRDInputError(
                    "--early-stopping-patience needs a validation pass every epoch: more than one epoch, and "
                    "--best-epoch (the best epoch is the one kept)"
                )

    def check_report_to(self) -> None:
        """Each ``report_to`` integration known to Trainer, and the two dhrd has extras for installed: Trainer
        would otherwise stop with a RuntimeError once the model is loaded."""
        from transformers.integrations import integration_utils as integrations

        extras = {"tensorboard": integrations.is_tensorboard_available, "wandb": integrations.is_wandb_available}
        for name in [self.report_to] if isinstance(self.report_to, str) else self.report_to or []:
            if name not in integrations.INTEGRATION_TO_CALLBACK and name not in ("all", "none"):
                known = ", ".join(sorted(integrations.INTEGRATION_TO_CALLBACK))
                raise DHRDInputError(f"--report_to {name}: not an integration Trainer knows ({known}, all, none)")
            if name in extras and not extras[name]():
                raise DHRDInputError(f"--report_to {name} needs {name}: pip install 'dhrd[{name}]'")

    def search_candidates(self) -> list[tuple[float, str]]:
        """The alpha search's (alpha, lm_scope) pairs, pooled (alpha 0, one scope) first."""
        try:
            alphas = sorted({float(a) for a in str(self.alpha_candidates).split(",") if a.strip()})
        except ValueError:
            raise DHRDInputError(f"--alpha-candidates {self.alpha_candidates!r}: numbers like 0,0.25,1") from None
        scopes = [s.strip() for s in str(self.lm_scope_candidates).split(",") if s.strip()]
        if not alphas or min(alphas) < 0 or not scopes or set(scopes) - set(choices_of("lm_scope")):
            raise DHRDInputError(
                f"--alpha-candidates {self.alpha_candidates!r} x --lm-scope-candidates {self.lm_scope_candidates!r}: "
                "alphas >= 0, scopes all or reasoning"
            )
        return [(a, "all" if a == 0 else scope) for a in alphas for scope in (scopes[:1] if a == 0 else scopes)]

    def trainer_arguments(self, **overrides) -> DHRDTrainingArguments:
        """The copy Trainer runs with: checkpoints in ``<output_dir>/checkpoints``, ``overrides`` on top.
        ``push_to_hub`` is off in it: Trainer would create the repository as it is built and push the checkpoint
        folder (a LoRA adapter, not the usable model) at every save; ``dhrd.train`` pushes the saved ``model/``
        with its card instead (``dhrd.hub.push_trained``)."""
        settings = {"output_dir": str(checkpoints_folder(self.output_dir)), "push_to_hub": False, **overrides}
        return dataclasses.replace(self, **settings)

    def __getstate__(self) -> dict:
        """Pickled without secrets: Trainer writes these arguments into every checkpoint
        (``training_args.bin``), and a hub token must never reach the disk (``to_dict`` masks it the same way)."""
        return {k: None if k.endswith("_token") else v for k, v in self.__dict__.items()}


def checkpoints_folder(run_dir: str | Path) -> Path:
    """Where Trainer keeps a run's checkpoints (its arguments' ``output_dir``)."""
    return Path(run_dir) / "checkpoints"


# transformers' own fields that DHRD does not redeclare (their metadata is transformers'): which of them define a
# run, and which do not. A field in neither (a newer transformers') is not checked on resume, and the test of
# this classification names it.
TRAINER_RUN_DEFINING = frozenset(
    {
        "max_steps",
        "lr_scheduler_kwargs",
        "optim_args",
        "optim_target_modules",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "max_grad_norm",
        "label_smoothing_factor",
        "neftune_noise_alpha",
    }
)
TRAINER_NOT_RUN_DEFINING = frozenset(
    # precision, memory, speed and devices
    "fp16 bf16_full_eval fp16_full_eval tf32 activation_checkpointing activation_checkpointing_kwargs "
    "gradient_checkpointing gradient_checkpointing_kwargs torch_compile torch_compile_backend torch_compile_mode "
    "use_liger_kernel liger_kernel_config use_cache torch_empty_cache_steps auto_find_batch_size "
    "average_tokens_across_devices accelerator_config parallelism_config dataloader_drop_last "
    "dataloader_num_workers dataloader_pin_memory dataloader_persistent_workers dataloader_prefetch_factor "
    "dataloader_multiprocessing_context dataloader_in_order ddp_find_unused_parameters ddp_bucket_cap_mb "
    "ddp_broadcast_buffers ddp_static_graph ddp_backend ddp_timeout fsdp fsdp_config deepspeed debug "
    "skip_memory_metrics full_determinism local_rank "
    # logging and reporting
    "logging_strategy logging_first_step log_on_each_node logging_nan_inf_filter include_num_input_tokens_seen "
    "log_level log_level_replica report_to run_name project trackio_space_id trackio_bucket_id "
    "trackio_static_space_id "
    # when to validate and what a validation pass gathers
    "eval_steps eval_delay prediction_loss_only eval_on_start eval_do_concat_batches eval_use_gather_object "
    "eval_accumulation_steps include_for_metrics batch_eval_metrics greater_is_better "
    # checkpoints, the hub and resuming
    "save_only_model save_on_each_node enable_jit_checkpoint push_to_hub hub_token hub_private_repo hub_model_id "
    "hub_strategy hub_always_push hub_revision ignore_data_skip restore_callback_states_from_checkpoint "
    "resume_from_checkpoint "
    # fixed or unused by DHRD
    "label_names length_column_name do_train do_eval do_predict".split()
)


def run_defining() -> tuple[str, ...]:
    """The settings that define a run, in field order: DHRD's fields declared so (``option(run=...)``) and
    ``TRAINER_RUN_DEFINING``. Resuming, or reusing a finished run, under another value of any is refused."""
    return tuple(
        f.name
        for f in dataclasses.fields(DHRDTrainingArguments)
        if f.metadata.get("defines_run", f.name in TRAINER_RUN_DEFINING)
    )


def choices_of(name: str) -> list[str] | None:
    """A field's allowed values, as its metadata declares them (the command line offers the same)."""
    return next((f.metadata.get("choices") for f in dataclasses.fields(DHRDTrainingArguments) if f.name == name), None)


def strategy_name(setting) -> str:
    """A strategy's name, whether TrainingArguments has made it an enum yet or not."""
    return getattr(setting, "value", setting)


def default_value(name: str):
    """A field's default (``None`` where it has none)."""
    for f in dataclasses.fields(DHRDTrainingArguments):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else None
    return None


def saved_value(name: str, saved: dict):
    """A setting as a saved run (its ``train_args.json``) trained with. A setting the run predates, or saved
    unresolved, counts as its default resolved as ``__post_init__`` resolves it from the run's other settings:
    a run saved before ``data_seed`` existed sampled its data with its ``seed``."""
    value = saved.get(name)
    if value is not None:
        return value
    if name == "data_seed":
        return saved.get("seed", default_value("seed"))
    if name == "train_sampling_strategy":
        return "group_by_length" if saved.get("group_by_length", default_value("group_by_length")) else "random"
    return value if name in saved else default_value(name)


__all__ = [
    "TRAINER_NOT_RUN_DEFINING",
    "TRAINER_RUN_DEFINING",
    "DHRDTrainingArguments",
    "choices_of",
    "default_value",
    "saved_value",
    "run_defining",
    "strategy_name",
]
