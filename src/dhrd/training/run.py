"""``train()``: one run from its arguments to the saved classifier, its metrics and the record of the run.

The parts live by concept: the arguments (``training_args``), preparing a run (``prepare``), the trainer and its
loss (``trainer``, ``loss_terms``), resuming (``resume``) and saving (``saving``); this module runs them in order.
Its names also include those earlier code imported from it (``from dhrd.training.run import ...``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..checks import training_options
from ..hub import push_trained
from ..memory import bound_process_memory, release_memory, reset_peak
from ..modeling import save_reasoning_head
from ..runtime import write_json_atomic, write_text_atomic
from .callbacks import MemoryCallback, RunClock, evaluations_without_improvement
from .loss_terms import LOSS_TERM_KEYS
from .prepare import PreparedRun
from .resume import RUN_DEFINING, changed_settings, checkpoint_to_resume, stop_if_stopped_early
from .run_lock import run_lock
from .run_rows import VALIDATION_SPLIT_FILE, record_validation_split
from .saving import PREDICTIONS_FILE, TEST_PREDICTIONS_FILE, save_scored
from .trainer import DHRDTrainer, prepare_run
from .training_args import DHRDTrainingArguments
from .tuning import SEARCH_DIR, run_search, search_markdown

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict
    history: list[dict]
    is_main_process: bool = True


def train(args: DHRDTrainingArguments | None = None, *, trainer: DHRDTrainer | None = None) -> TrainResult:
    """Train, keep the best epoch by the validation score, save the classifier and its metrics: the one-call
    path. ``trainer``: a DHRDTrainer built with the Trainer-shaped API (its own datasets, callbacks, ...) to
    run instead of one built from ``args``. A run with the same settings in ``output_dir`` is resumed. With
    ``alpha_search`` (``--alpha auto``), alpha is chosen first on a dev split of the training rows
    (``dhrd.training.tuning``). With ``push_to_hub``, the saved ``model/`` and its card go to the hub at the end (also
    when the run had finished before). Another process training in ``output_dir`` meanwhile: ``RunInUse``."""
    if trainer is None and args is not None:
        training_options(args)  # a bad number or path stops here, before any data or model loads (or a lock is taken)
    if trainer is None and args is None:
        args = DHRDTrainingArguments()  # every default
    run_args = args if trainer is None else getattr(trainer.prepared, "args", None)
    with run_lock((run_args or trainer.args).output_dir):  # one process a run directory: a second is refused
        result = _train_and_save(args, trainer)
        if run_args is not None and run_args.push_to_hub and result.is_main_process:
            push_trained(result.model_dir, run_args)
    return result


def _train_and_save(args: DHRDTrainingArguments | None, trainer: DHRDTrainer | None) -> TrainResult:
    """The run inside ``train``'s lock: from ``args`` (given, or every default) when ``trainer`` is None."""
    bound_process_memory()  # before the first matmul of the process (dhrd.memory): the search's trials' too
    if trainer is None and args.alpha_search:
        return train_with_alpha_search(args)
    if trainer is None and (finished := finished_run(args)) is not None:
        return finished
    reset_peak()  # this run's peak, not an earlier run's of the same process
    own_trainer = trainer is None  # built here: nothing outside needs it once the run is saved
    if trainer is None:
        run_parts = prepare_run(args)
    else:
        run_parts = trainer.prepared
    args = run_parts.args
    trainer, tokenizer, input_format = run_parts.trainer, run_parts.tokenizer, run_parts.input_format
    train_rows, eval_rows, missing = run_parts.train_rows, run_parts.eval_rows, run_parts.rows_without_rationale
    output = Path(args.output_dir)
    checkpoint = checkpoint_to_resume(args, output, run_parts.peft_config)
    if trainer.is_world_process_zero():  # one writer: processes sharing one temporary file name would race
        record_validation_split(output, run_parts.validation_split, checkpoint is not None)
        write_json_atomic(output / "train_args.json", {**args.to_dict(), "peft_config": run_parts.peft_config})
    if checkpoint:
        logger.warning("resuming from %s", checkpoint)
        stop_if_stopped_early(trainer, checkpoint, args.early_stopping_patience)
    memory = next((c for c in trainer.callback_handler.callbacks if isinstance(c, MemoryCallback)), None)
    clock = next((c for c in trainer.callback_handler.callbacks if isinstance(c, RunClock)), None)
    start = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    # a resumed run's time counts its earlier processes' too, to their last checkpoint (Trainer's train_runtime
    # is this process's alone)
    kept_seconds = clock.earlier_seconds if clock is not None else None  # None: not kept (or not resumed)
    earlier_seconds = kept_seconds or 0.0
    train_seconds = time.perf_counter() - start + earlier_seconds
    runtime = train_output.metrics.get("train_runtime", train_seconds - earlier_seconds) + earlier_seconds

    history = [h for h in trainer.state.log_history if "eval_score" in h]
    # the search's trainers name "score" to rank trials even where no epoch is chosen (one epoch): not a choice
    chosen_by = trainer.args.metric_for_best_model if trainer.args.load_best_model_at_end else None
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
        "train_seconds_before_resume": None if kept_seconds is None else round(kept_seconds, 2),
        "train_seconds_per_epoch": round(
            runtime / max(train_output.metrics.get("epoch", args.num_train_epochs), 1e-9),
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
        (runtime - eval_seconds) / max(train_output.metrics.get("epoch", args.num_train_epochs), 1e-9),
        2,
    )
    if trainer.is_world_process_zero():  # one writer; the other processes wait for it
        best = trainer.model.merge_and_unload() if hasattr(trainer.model, "merge_and_unload") else trainer.model
        budget = getattr(trainer, "activation_budget", None)

        def memory_record() -> dict | None:
            return None if memory is None else memory.finish(budget, getattr(args, "activation_memory", None))

        test_rows = run_parts.rows.test_rows if run_parts.rows is not None else []
        save_scored(best, tokenizer, eval_rows, input_format, args, output, run, memory_record, test_rows)
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
    if args.score_validation and metrics.get("validation_scored") is False:
        return None  # finished with --skip-validation: resumed from its last checkpoint, only to be scored
    logger.info("already complete: %s, trained on %s rows (--restart trains again)", output, metrics.get("train_rows"))
    return TrainResult(output / "model", metrics, [])


# here, not in ``tuning``: it trains the chosen setting with ``train``, and ``tuning`` sits below this module
def train_with_alpha_search(args: DHRDTrainingArguments):
    """``--alpha auto``: the search (``tuning``), then the chosen setting trained on all the training rows, saved
    with the search table (``alpha-search.{json,md}`` in the run and model directories, ``alpha_search`` in metrics)."""
    table = run_search(args)
    output = Path(args.output_dir)
    final = dataclasses.replace(
        args,
        alpha_search=False,
        method="pooled" if table["alpha"] == 0 else "dhrd",
        alpha=None if table["alpha"] == 0 else table["alpha"],
        lm_scope=table["lm_scope"],
        push_to_hub=False,  # train() pushes once the search table is saved beside the model
    )
    logger.warning("alpha search chose %s; training it on all the training rows", table["chosen"])
    result = train(final)
    text = search_markdown(table)
    for folder in (output, result.model_dir):
        write_json_atomic(folder / f"{SEARCH_DIR}.json", table)
        write_text_atomic(folder / f"{SEARCH_DIR}.md", text)
    result.metrics["alpha_search"] = table
    write_json_atomic(output / "metrics.json", result.metrics)
    return result


__all__ = [
    "DHRDTrainingArguments",
    "DHRDTrainer",
    "PREDICTIONS_FILE",
    "PreparedRun",
    "RUN_DEFINING",
    "TEST_PREDICTIONS_FILE",
    "TrainResult",
    "changed_settings",
    "finished_run",
    "prepare_run",
    "train",
]
