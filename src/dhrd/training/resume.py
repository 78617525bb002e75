"""Resuming a run: its last complete checkpoint, and the checks that the settings still define the same run."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.inputs import parse_label_map
from ..errors import DHRDInputError
from .callbacks import evaluations_without_improvement
from .training_args import (
    DEFAULT_VALIDATION_FRACTION,
    DHRDTrainingArguments,
    checkpoints_folder,
    run_defining,
    saved_value,
    strategy_name,
)

if TYPE_CHECKING:  # annotations only: the trainer module is heavy and builds on much else
    from .trainer import DHRDTrainer

logger = logging.getLogger(__name__)


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


def checkpoint_to_resume(args: DHRDTrainingArguments, output: Path, peft_config: str | None = None) -> str | None:
    """The last checkpoint of an earlier run of the same settings (and the same given peft config, by its
    fingerprint); ``--restart`` removes old checkpoints."""
    checkpoints = checkpoints_folder(output)
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
    refuse_other_settings(output, "a run", changed, "discard its checkpoints")
    return last


def refuse_other_settings(where, held: str, changed: list[str], restart: str, elsewhere: str = "--output-dir") -> None:
    """Stop, in one line, a run that would continue (or reuse) ``held`` kept in ``where`` under other settings: the
    run-defining ``changed`` (``changed_settings``). None changed: nothing to say."""
    if changed:
        raise DHRDInputError(
            f"{where}: holds {held} with other settings ({', '.join(changed)}); use another {elsewhere}, or --restart "
            f"to {restart}"
        )


def stop_if_stopped_early(trainer: DHRDTrainer, checkpoint: str, patience: int | None) -> None:
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
