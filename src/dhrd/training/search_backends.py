"""Where ``--alpha auto``'s trials run: transformers' ``Trainer.hyperparameter_search`` with optuna (the default:
one machine, trials one after another, the study a SQLite file) or ray (``--alpha-search-backend ray``: trials side
by side on a local ray, or spread over a cluster named by ray's own ``RAY_ADDRESS``). Each backend keeps its trials
in the search folder, so that a killed search started again runs only the candidates that had not ended, and hands
back one ``TrialRecord`` a trial, whichever backend ran it, for ``tuning.search_table``.

Where optuna keeps them is ``--alpha-search-storage``: by default ``optuna.db`` in the search folder; or any optuna
storage URL (``postgresql://...``), or a journal file (optuna's append-only text log, one operation a line), which
outlives the output directory: on shared storage, or committed beside a study's results, a search started on
another machine (a fresh checkout: no ``runs/``) runs only the candidates that had not ended there. There the search's
settings are kept in the study itself, so a storage holding another run's search is refused (``tuning``).

Pruning is each backend's median rule from the same dev pass (``PRUNE_FROM_PASS``): optuna's ``MedianPruner`` (a
trial's best dev score so far below the median of the finished trials at the same pass, the first two trials always
finishing) and ray's ``MedianStoppingRule`` (below the median of the running means of two or more other trials that
reached the same pass). Pooled is never pruned by either: the search ships pooled unless a DHRD candidate beat
pooled's whole run on dev. Nor is a trial at its last pass: its training is done, and it is one of the finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DHRDInputError

STUDY_NAME = "dhrd-alpha-search"  # one search a storage
OPTUNA_STORE = "optuna.db"
SEARCH_SETTINGS = "search_args"  # the study's user attribute: the settings the search started with
RAY_EXPERIMENT = "ray"
EVALUATIONS_PER_TRIAL = 4  # dev passes a trial reports, the points at which it can be pruned
# the first dev pass a trial can be pruned at: at the first (a quarter of a one-epoch run) the candidates were all
# within noise of the floor (ComVE, 1,000 rows: 49.5-52.5 on 200 dev rows, pooled lowest, then best at its third
# pass), so a prune there was a draw; from the second on, the scores have begun to separate
PRUNE_FROM_PASS = 2
FINISHED_BEFORE_PRUNING = 2  # trials that end before any can be pruned: pooled and the first DHRD candidate

# optuna user attributes: the seconds a trial took to report its last dev pass, and that it was kept complete from
# them after its process was killed
FINAL_PASS_SECONDS = "final_pass_seconds"
KEPT_AFTER_KILL = "kept_after_kill"
# what a trial's last dev score is made of, per dev example (``tuning.dev_statistics``): an optuna user attribute,
# a ray result's field (as JSON); the search table pairs each candidate with pooled by dev example from it
DEV_STATISTICS = "dev_statistics"
# the seconds a trial resumed from its checkpoint had trained in the processes before (``tuning.resume_trial``)
EARLIER_SECONDS = "earlier_seconds"
# an enqueued trial set aside before it started, its candidate enqueued again in the search's order
SUPERSEDED = "superseded"

Candidate = tuple[float, str]  # (alpha, lm_scope)


@dataclass
class TrialRecord:
    """One ended trial, as either backend kept it."""

    alpha: float
    lm_scope: str
    pruned: bool
    value: float | None  # the dev score the trial ended with; None when pruned
    dev_scores: dict[int, float]  # optimiser step -> dev score, at each pass the trial reached
    seconds: float
    dev_statistics: dict | None = None  # its last pass's, per dev example; None: pruned, or not kept by this version


def optuna_storage(spec: str | None, folder: Path):
    """The storage an optuna search keeps its trials in (``--alpha-search-storage``, ``spec``): ``optuna.db`` in the
    search ``folder`` (None), an optuna storage URL (``scheme://...``), or else a journal file at that path."""
    if spec is None:
        return f"sqlite:///{folder / OPTUNA_STORE}"
    if "://" in spec:
        return spec
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_line(path)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _drop_torn_line(journal: Path) -> None:
    """Cut a journal's last line if a kill left it unfinished: optuna skips an unfinished last line, but appends
    the next operation to it, and then fails on the line they make together."""
    if not journal.is_file() or journal.stat().st_size == 0:
        return
    with open(journal, "r+b") as f:
        f.seek(-1, 2)  # its last byte: a whole journal ends its last line
        if f.read(1) == b"\n":
            return
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)  # torn (rare): only then is the journal read, to its last whole line


def optuna_settings(storage) -> dict | None:
    """The settings the search kept in ``storage`` started with; None where it holds no search, or one from before
    they were kept there."""
    study = _existing_study(storage)
    return None if study is None else study.user_attrs.get(SEARCH_SETTINGS)


def keep_optuna_settings(storage, settings: dict) -> None:
    """Keep the search's settings in its study (created here if need be), once: those it started with."""
    study = _optuna_study(storage)
    if SEARCH_SETTINGS not in study.user_attrs:
        study.set_user_attr(SEARCH_SETTINGS, settings)


def forget_optuna_search(storage) -> None:
    """Delete the search kept in ``storage`` (``--restart``), if there is one."""
    import optuna

    if _existing_study(storage) is not None:
        optuna.delete_study(study_name=STUDY_NAME, storage=storage)


def _existing_study(storage):
    import optuna

    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage)
    except KeyError:  # no such study in the storage
        return None


def optuna_trials(folder: Path, candidates: list[Candidate], make_trainer: Callable, storage=None) -> list[TrialRecord]:
    """Run the candidates not yet ended through optuna (enqueued, so each runs exactly once), then every ended trial.
    ``storage``: where the trials are kept (``optuna_storage``; None: ``optuna.db`` in ``folder``)."""
    import optuna
    from optuna.trial import TrialState

    storage = storage or optuna_storage(None, folder)
    study = _optuna_study(storage)
    # pooled is never pruned now; a pooled trial pruned by an earlier version runs again, to the end
    ended = {
        optuna_candidate(t)
        for t in study.trials
        if t.state == TrialState.COMPLETE or (t.state == TrialState.PRUNED and optuna_candidate(t)[0] != 0)
    }
    pending = [c for c in candidates if c not in ended]
    _enqueue_in_order(study, pending)
    if pending:
        trainer = make_trainer()
        choices = _study_choices(study, candidates)
        trainer.hyperparameter_search(
            direction="maximize",
            backend="optuna",
            hp_space=lambda trial: _candidate_params(trial, choices),
            n_trials=len(pending),
            compute_objective=lambda metrics: metrics["eval_score"],
            study_name=STUDY_NAME,
            storage=storage,
            load_if_exists=True,
            # Trainer reports a pass at its optimiser step, and optuna prunes from the step that reaches
            # n_warmup_steps
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=FINISHED_BEFORE_PRUNING, n_warmup_steps=PRUNE_FROM_PASS * trainer.args.eval_steps
            ),
        )
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    return [_optuna_record(t) for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def _study_choices(study, candidates: list[Candidate]) -> dict[str, list]:
    """Each parameter's choices for the study's trials: those it started with, for optuna keeps a parameter's choices
    fixed for the life of a study (other choices raise "CategoricalDistribution does not support dynamic value
    space"); a new study's are the candidates'."""
    choices = {"alpha": sorted({a for a, _ in candidates}), "lm_scope": sorted({s for _, s in candidates})}
    for name in choices:
        started_with = next((t.distributions[name] for t in study.trials if name in t.distributions), None)
        if started_with is not None:
            choices[name] = list(started_with.choices)
    return choices


def _candidate_params(trial, choices: dict[str, list]) -> dict:
    """The enqueued candidate a trial runs, as Trainer's hyperparameters, recorded as the trial's optuna params under
    the study's ``choices``; a candidate outside them (a search started again with other candidates) is read from the
    trial's enqueued (fixed) params alone (``optuna_candidate``)."""
    alpha, scope = optuna_candidate(trial)
    for name, value in (("alpha", alpha), ("lm_scope", scope)):
        if value in choices[name]:
            trial.suggest_categorical(name, choices[name])
    return {"alpha": alpha, "lm_scope": scope}


def _enqueue_in_order(study, pending: list[Candidate]) -> None:
    """Leave ``pending`` waiting in the study in the candidates' order. A killed trial's candidate was enqueued
    again behind those waiting since before the kill; but the pruner judges each trial by the trials that finished
    before it, so a search resumed in another order could prune what the unbroken search kept. When the waiting
    trials are not ``pending`` in order (a kill in a trial, or other candidates), they are set aside (failed, marked
    ``SUPERSEDED``) and ``pending`` enqueued afresh."""
    from optuna.trial import TrialState

    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    if [optuna_candidate(t) for t in waiting] == pending:
        return
    for trial in waiting:
        study._storage.set_trial_user_attr(trial._trial_id, SUPERSEDED, True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    for alpha, scope in pending:
        study.enqueue_trial({"alpha": alpha, "lm_scope": scope})


def killed_trials(study, candidate: Candidate) -> list:
    """The trials of ``candidate`` that a kill ended (failed), oldest first: not those set aside unstarted."""
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if optuna_candidate(t) == candidate and not t.user_attrs.get(SUPERSEDED)
    ]


def final_pass(trial, seconds: float) -> None:
    """Mark an optuna trial as having reported its last dev pass (its result), ``seconds`` after it started."""
    trial.set_user_attr(FINAL_PASS_SECONDS, seconds)


def _optuna_study(storage):
    """The search's study, its trials that were running when their process was killed ended: one that had
    reported its last dev pass (the objective Trainer hands optuna is that pass's score) is complete, with that
    score and the time it took to reach it; any other never finishes and runs again."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study(direction="maximize", storage=storage, study_name=STUDY_NAME, load_if_exists=True)
    for trial in study.trials:
        if trial.state != TrialState.RUNNING:
            continue
        if FINAL_PASS_SECONDS in trial.user_attrs and trial.intermediate_values:
            last = trial.intermediate_values[max(trial.intermediate_values)]
            study._storage.set_trial_user_attr(trial._trial_id, KEPT_AFTER_KILL, True)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [last])
        else:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return study


def optuna_candidate(trial) -> Candidate:
    """The (alpha, lm_scope) candidate a trial runs. An enqueued trial that has not started (WAITING, as a killed
    search leaves those it had not reached), or a running one before its parameters are suggested, has no params
    yet: its candidate is in ``fixed_params``, as is any part of it outside the choices the study started with
    (``_candidate_params``)."""
    if hasattr(trial, "system_attrs"):  # a trial as the study lists it (FrozenTrial)
        system_attrs = trial.system_attrs
    else:  # the running trial (optuna.Trial): from its storage
        system_attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
    params = {**system_attrs.get("fixed_params", {}), **trial.params}
    return float(params["alpha"]), "all" if not float(params["alpha"]) else params["lm_scope"]


def _optuna_record(trial) -> TrialRecord:
    from optuna.trial import TrialState

    alpha, scope = optuna_candidate(trial)
    return TrialRecord(
        alpha=alpha,
        lm_scope=scope,
        pruned=trial.state == TrialState.PRUNED,
        value=None if trial.value is None else float(trial.value),
        dev_scores={int(s): float(v) for s, v in sorted(trial.intermediate_values.items())},
        # a trial kept after a kill ended at its last pass, not when the search was started again; one resumed from
        # its checkpoint trained in the processes before too
        seconds=trial.user_attrs.get(EARLIER_SECONDS, 0.0)
        + (
            trial.user_attrs[FINAL_PASS_SECONDS]
            if trial.user_attrs.get(KEPT_AFTER_KILL)
            else (trial.datetime_complete - trial.datetime_start).total_seconds()
        ),
        dev_statistics=trial.user_attrs.get(DEV_STATISTICS),
    )


def ray_trials(folder: Path, candidates: list[Candidate], make_trainer: Callable, storage=None) -> list[TrialRecord]:
    """Run the candidates as one ray ``grid_search`` (each once, side by side as the cluster's CPUs allow: one CPU
    a trial, and one GPU where there is one, transformers' default), resuming the experiment kept in
    ``<folder>/ray`` (its ended trials kept, the others run again from the start), then every ended trial.
    ``storage`` is optuna's (``tuning.run_search`` refuses one for ray)."""
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import MedianStoppingRule
    except ImportError:
        raise DHRDInputError("--alpha-search-backend ray needs ray: pip install 'dhrd[ray]'") from None
    folder = folder.resolve()  # ray keeps an experiment at an absolute path (or a URI, for a cluster)
    records = _ray_records(folder / RAY_EXPERIMENT, candidates)
    if {(r.alpha, r.lm_scope) for r in records} >= set(candidates):
        return records
    trainer = make_trainer()
    _forget_left_dataloaders(trainer)
    if not ray.is_initialized():  # a local ray, or the cluster that RAY_ADDRESS names
        ray.init(include_dashboard=False, configure_logging=False)
    grid = [{"alpha": alpha, "lm_scope": scope} for alpha, scope in candidates]
    trainer.hyperparameter_search(
        direction="maximize",
        backend="ray",
        hp_space=lambda _: {"candidate": tune.grid_search(grid)},  # unpacked by AlphaSearchTrainer._hp_search_setup
        n_trials=1,  # samples of the grid: each candidate once
        compute_objective=lambda metrics: metrics["eval_score"],
        scheduler=_median_rule(MedianStoppingRule)(
            time_attr="training_iteration",  # a trial's dev passes
            metric="objective",
            mode="max",
            grace_period=PRUNE_FROM_PASS,
            min_samples_required=FINISHED_BEFORE_PRUNING,
        ),
        storage_path=str(folder),
        name=RAY_EXPERIMENT,
        resume="AUTO+RESTART_ERRORED",
        verbose=1,
    )
    return _ray_records(folder / RAY_EXPERIMENT, candidates)


def _forget_left_dataloaders(trainer) -> None:
    """ray pickles the trainer for its trials, and with it accelerate's gradient state, which every ``Accelerator``
    of the process shares: it holds a weak reference (unpicklable) to each dataloader a loop is in, and a loop left
    before its end (a run's ``max_steps``, a prediction stopped early) leaves its reference behind. A search starts
    in no loop, so an earlier run in this process (a notebook's first ``train``) cannot stop it."""
    trainer.accelerator.gradient_state.dataloader_references = [None]


def _median_rule(median_stopping_rule: type) -> type:
    """ray's ``MedianStoppingRule`` without its yielding, and never stopping pooled. With fewer finished trials than
    it needs, it pauses a trial to let a waiting one run, and a trial keeps no checkpoint (``save_strategy="no"``),
    so each pause threw its training away and started it again (seen: three tiny trials going round for 15
    minutes). Pooled is the baseline a DHRD candidate must beat on dev: its scores count, it always finishes."""

    from ray.tune.schedulers import TrialScheduler

    class MedianRuleWithoutYielding(median_stopping_rule):
        def _on_insufficient_samples(self, tune_controller, trial, time):
            return TrialScheduler.CONTINUE

        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)  # its scores count in the medians
            if float(trial.config["candidate"]["alpha"]) == 0:  # pooled, the baseline: never stopped
                self._stopped_trials.discard(trial)
                return TrialScheduler.CONTINUE
            return decision

    return MedianRuleWithoutYielding


def _ray_records(experiment: Path, candidates: list[Candidate]) -> list[TrialRecord]:
    """The ended trials of the ray experiment in ``experiment`` (none if it has not started). A trial reports
    its optimiser step and the run's last (``AlphaSearchTrainer._report_to_hp_search``): one that stopped before
    the last was stopped by the scheduler, pruned."""
    if not any(experiment.glob("experiment_state-*.json")):  # what tune.run writes as the experiment starts
        return []
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    kept = {(float(t.config["candidate"]["alpha"]), t.config["candidate"]["lm_scope"]) for t in analysis.trials}
    if kept != set(candidates):
        raise DHRDInputError(
            f"{experiment}: this ray search was started with other candidates ({sorted(kept)}); remove the folder "
            "to search again, or choose another --output-dir"
        )
    frames = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        last = trial.last_result or {}
        if trial.status != "TERMINATED" or "step" not in last:
            continue
        frame = frames.get(trial.path)
        passes = zip(frame["step"], frame["objective"]) if frame is not None else [(last["step"], last["objective"])]
        pruned = last["step"] < last["max_steps"]
        records.append(
            TrialRecord(
                alpha=float(trial.config["candidate"]["alpha"]),
                lm_scope=trial.config["candidate"]["lm_scope"],
                pruned=pruned,
                value=None if pruned else float(last["objective"]),
                dev_scores={int(s): float(v) for s, v in passes},
                seconds=float(last["time_total_s"]),
                dev_statistics=None if pruned or not last.get(DEV_STATISTICS) else json.loads(last[DEV_STATISTICS]),
            )
        )
    return records


BACKENDS = {"optuna": optuna_trials, "ray": ray_trials}
