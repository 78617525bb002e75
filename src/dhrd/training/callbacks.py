"""The run's Trainer callbacks: early stopping that survives a resume, step checkpoints between epoch ones, the
record of resident memory and the run's training seconds (both counting a resumed run's earlier processes)."""

from __future__ import annotations

import time

from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_callback import ExportableState

from ..memory import ActivationBudget, peak_rss_gb, release_memory, rss_gb


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


class KeptInCheckpoints(TrainerCallback, ExportableState):
    """A callback whose ``state()`` each checkpoint's trainer state keeps (Trainer saves an ``ExportableState``'s).

    A run resumed from a checkpoint written by a dhrd that did not keep this callback (an older version, or
    another run's settings) loads a trainer state without its entry, and Trainer's next checkpoint save indexes
    that entry and fails with a KeyError (queue A's RTE cell, resumed across an upgrade, died at its first save).
    ``on_train_begin`` runs after the state is loaded: the entry is added there when it is missing."""

    def on_train_begin(self, args, state, control, **kwargs):
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())


class RunClock(KeptInCheckpoints):
    """The seconds a run has trained, over the processes of a run killed and resumed: each checkpoint's trainer
    state keeps the seconds so far (``state``), read back when training resumes (``earlier_seconds``), so that a
    resumed run's time is not only its last process's. The work between the last checkpoint and the kill, done
    again by the resumed process, counts once."""

    def __init__(self):
        self.earlier_seconds: float | None = None  # None: not resumed, or from a checkpoint that kept none
        self.started: float | None = None

    def state(self) -> dict:
        return {"args": {}, "attributes": {"seconds": self.seconds_so_far()}}

    def seconds_so_far(self) -> float:
        return (self.earlier_seconds or 0.0) + (0.0 if self.started is None else time.perf_counter() - self.started)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        # resumed: the checkpoint's trainer state holds the earlier processes' seconds; a fresh start (an alpha
        # search's next trial, by the same trainer and callback) has none
        self.earlier_seconds = self.kept_seconds(state) if state.global_step else None
        super().on_train_begin(args, state, control, **kwargs)

    @classmethod
    def kept_seconds(cls, state) -> float | None:
        """The seconds a checkpoint's trainer state kept: the run's training up to that checkpoint."""
        return _kept_attributes(state, cls).get("seconds")


def _kept_attributes(state, callback: type) -> dict:
    """What a checkpoint's trainer state kept of the attributes of a ``callback`` (``ExportableState``) class."""
    kept = state.stateful_callbacks.get(callback.__name__) or {}
    kept = kept[0] if isinstance(kept, list) else kept
    return kept.get("attributes") or {}


class MemoryCallback(KeptInCheckpoints):
    """Resident memory (GB, ``dhrd.memory``) at the points of a run: after the model is loaded (``loaded``), when
    training begins, after the first optimiser step, at each epoch's end, and the run's peak (since train()'s
    ``reset_peak``). Frees what the epoch left (``release_memory``) before each epoch-end figure.

    A resumed run's peak counts the processes before it too: each checkpoint's trainer state keeps the peak so far
    (``state``; Trainer saves an ``ExportableState`` callback's), read back when training resumes. dhrd leaves
    ``restore_callback_states_from_checkpoint`` off, so Trainer keeps this instance rather than building another."""

    def __init__(self):
        self.record: dict = {"unit": "GB", "peak_rss": None, "rss_after_load": None, "rss_at_train_begin": None}
        self.record.update(rss_after_first_step=None, rss_at_epoch_end=[])
        self.earlier_peak: float | None = None  # a resumed run's processes before this one, to its checkpoint

    def state(self) -> dict:
        return {"args": {}, "attributes": {"peak_rss": self.peak_so_far()}}

    def peak_so_far(self) -> float | None:
        peaks = [p for p in (peak_rss_gb(), self.earlier_peak) if p is not None]
        return max(peaks) if peaks else None

    def loaded(self) -> None:
        self.record["rss_after_load"] = rss_gb()

    def on_train_begin(self, args, state, control, **kwargs):
        self.record["rss_at_train_begin"] = rss_gb()
        if state.global_step:  # resumed: the checkpoint's trainer state holds the earlier processes' peak
            self.earlier_peak = _kept_attributes(state, type(self)).get("peak_rss")
        self.record["peak_rss_before_resume"] = self.earlier_peak
        super().on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.record["rss_after_first_step"] is None:
            self.record["rss_after_first_step"] = rss_gb()
            self.record["peak_rss_first_step"] = peak_rss_gb()

    def on_epoch_end(self, args, state, control, **kwargs):
        release_memory()
        self.record["rss_at_epoch_end"].append({"epoch": round(state.epoch or 0.0, 3), "rss": rss_gb()})

    def finish(self, budget: ActivationBudget | None = None, budget_gb: float | None = None) -> dict:
        """The record, with the run's peak and what the activation budget did."""
        self.record["peak_rss"] = self.peak_so_far()
        self.record["rss_at_end"] = rss_gb()
        self.record["activation_memory"] = budget_gb
        self.record["most_layers_recomputed"] = None if budget is None else budget.most
        return dict(self.record)
