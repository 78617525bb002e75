"""``--alpha auto``: DHRD's loss weight (and its LM loss's scope) chosen on held-out training data.

The paper chose alpha per backbone on the validation split and found results sensitive to it. Here the choice never
sees the reported split: a seeded, stratified dev split is carved from the training rows (``carve_dev_split``),
every candidate (alpha 0, which is the pooled baseline, then each alpha x scope) trains on the rest and is scored on
it, through transformers' ``Trainer.hyperparameter_search`` (optuna by default, ray for a cluster:
``search_backends``), a trial whose dev score falls below the median of the finished trials pruned (from its second
dev pass on, never at its last: its training is done). The winner is trained again on all the training rows and
saved, the search table beside it, by ``run.train_with_alpha_search`` (it needs ``train``, which sits above this
module). Pooled being a candidate, the search ships pooled unless another candidate beat it on dev. Each finished
candidate's lead over pooled is given with a 95% bootstrap interval over the dev examples (paired by example,
``dhrd.stats``): a dev split of a few hundred rows leaves a lead of a few points within its noise.

The trials are kept in ``<output_dir>/alpha-search/`` (``optuna.db``, or ray's experiment in ``ray/``), or where
``--alpha-search-storage`` names (optuna: a storage URL or a journal file, which outlives the output directory): a
killed search keeps its ended trials and runs only the others when started again. With optuna, the trial that was
running resumes from its checkpoint, kept at each dev pass in its candidate's folder (``trial_folder``) until it ends;
ray starts it again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
from transformers.trainer_utils import HPSearchBackend, SaveStrategy

from ..errors import DHRDInputError
from ..memory import bound_process_memory, release_memory
from ..runtime import write_json_atomic
from ..stats import example_statistics, paired_difference
from .callbacks import RunClock
from .epoch_metrics import prediction_probabilities
from .model_setup import reasoning_head
from .resume import changed_settings, latest_complete_checkpoint, refuse_other_settings
from .run_rows import encode_rows
from .search_backends import (
    BACKENDS,
    DEV_STATISTICS,
    EARLIER_SECONDS,
    EVALUATIONS_PER_TRIAL,
    RAY_EXPERIMENT,
    TrialRecord,
    final_pass,
    forget_optuna_search,
    keep_optuna_settings,
    killed_trials,
    optuna_candidate,
    optuna_settings,
    optuna_storage,
)
from .trainer import DHRDTrainer
from .training_args import DHRDTrainingArguments, checkpoints_folder

logger = logging.getLogger(__name__)

SEARCH_DIR = "alpha-search"
DEFAULT_DEV_FRACTION = 0.2
SEARCH_ARGS = "search_args.json"  # the settings the search started with


def candidate_name(alpha: float, scope: str) -> str:
    return "pooled" if alpha == 0 else f"alpha {alpha:g}, lm-scope {scope}"


class AlphaSearchTrainer(DHRDTrainer):
    """A DHRDTrainer whose trials set ``alpha`` and ``lm_scope``: each trial trains a fresh model
    (``model_init``) on the training rows encoded for its scope (pooled: without rationales)."""

    def __init__(self, args: DHRDTrainingArguments, scopes: set[str]):
        # dev passes every eval_steps (set below, once the rows are counted), the dev score; checkpoints only in an
        # optuna trial (``_hp_search_setup``). No best pass is tracked: a trial's result is its last pass (the
        # objective reads ``eval_score``), and a best checkpoint named in the trial's state outlived the folder that
        # only the newest is kept in (Trainer's end of training looked for it: RTE-all's seed 3 failed so; resumed,
        # it warned that the checkpoint "does not exist anymore")
        trial = dict(eval_strategy="steps", save_strategy="no", load_best_model_at_end=False)
        super().__init__(args=args, trainer_overrides={**trial, "metric_for_best_model": None})
        self.train_sets = {"all": self.train_dataset, **scope_sets(self.prepared, scopes)}
        self.args.eval_steps = evaluation_steps(args, len(self.train_dataset))
        self.model_init = self.trial_model  # Trainer builds each trial's model with it
        self.dev_statistics = None  # the last dev pass's, per dev example: kept with the trial at its last pass
        score = self.compute_metrics

        def score_and_keep(prediction) -> dict:
            rows = self.prepared.eval_rows
            probs = prediction_probabilities(prediction)
            self.dev_statistics = dev_statistics(rows, probs, self.prepared.input_format)
            return score(prediction)

        self.compute_metrics = score_and_keep

    def trial_model(self, trial=None):
        """A freshly initialised model, whose reasoning head the loss then reads and whose layers its activation
        budget recomputes. The last trial's model, optimiser and budget are let go first (Trainer would drop them
        only once this returns), so that one trial's weights are alive at a time; and the process's memory
        settings are made, for a ray worker's first trial."""
        self.model = self.model_wrapped = self.optimizer = self.lr_scheduler = self.reasoning_weight = None
        self.activation_budget = None  # it holds the last model's layers
        handler = self.callback_handler  # callbacks are handed the last trial's model and optimiser
        handler.model = handler.optimizer = handler.lr_scheduler = None
        bound_process_memory()
        release_memory()
        model, classifier, causal_lm = self.prepared.model_parts()
        self.reasoning_weight = reasoning_head(classifier, causal_lm)
        self.budget_activations(model)  # without it a trial's long batches kept every layer's activations
        return model

    def _hp_search_setup(self, trial) -> None:
        if isinstance(trial, dict) and "candidate" in trial:  # ray: one grid point, {"alpha": a, "lm_scope": s}
            trial = dict(trial["candidate"])
        super()._hp_search_setup(trial)  # sets args.alpha and args.lm_scope from the trial's parameters
        if trial is None:
            return
        self.alpha = float(self.args.alpha)
        self.train_dataset = self.train_sets["pooled" if not self.alpha else self.args.lm_scope]
        if self.hp_search_backend == HPSearchBackend.OPTUNA:
            # a checkpoint at each dev pass (the newest kept: ``_save_checkpoint``), for a killed search to resume
            # the trial from (ray's trials keep none: a ray trial starts again)
            self.args.save_strategy, self.args.save_steps = SaveStrategy.STEPS, self.args.eval_steps

    def _get_output_dir(self, trial) -> str:
        # an optuna trial's checkpoints in its candidate's folder, not its trial number's: the trial that runs the
        # candidate after a kill is another trial, and resumes from them
        if self.hp_search_backend == HPSearchBackend.OPTUNA and trial is not None:
            return str(trial_folder(self.args.output_dir, self.alpha, self.args.lm_scope))
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        if trial is None:
            return super()._save_checkpoint(model, trial)
        if self.state.global_step >= self.state.max_steps:
            return  # the trial's last pass is its result: nothing is left to resume
        super()._save_checkpoint(model, trial)
        # only the newest is resumed from (whatever --save-total-limit keeps of a plain run's)
        newest = f"checkpoint-{self.state.global_step}"
        for older in Path(self._get_output_dir(trial)).glob("checkpoint-*"):
            if older.name != newest:
                shutil.rmtree(older, ignore_errors=True)

    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        """An optuna trial resumes from its candidate's checkpoint, kept by a trial of a killed search, and removes
        the folder once it has ended (finished or pruned); a trial cut short otherwise keeps it. Each trial says
        which candidate it trains and how it ended: a search runs for hours, one progress bar a trial."""
        if trial is None or self.hp_search_backend != HPSearchBackend.OPTUNA:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)
        import optuna

        candidate = optuna_candidate(trial)
        folder = trial_folder(self.args.output_dir, *candidate)
        logger.warning("alpha search: training %s (%s)", candidate_name(*candidate), search_progress(trial.study))
        checkpoint = resume_from_checkpoint or latest_complete_checkpoint(folder)
        if checkpoint:
            resume_trial(trial, checkpoint)
        try:
            result = super().train(resume_from_checkpoint=checkpoint, trial=trial, **kwargs)
        except optuna.TrialPruned:
            shutil.rmtree(folder, ignore_errors=True)
            logger.warning(
                "alpha search: %s pruned at step %d of %d: its dev score %.1f is below the median of the finished "
                "trials at that pass", candidate_name(*candidate), self.state.global_step, self.state.max_steps,
                self.objective,
            )  # fmt: skip
            raise
        shutil.rmtree(folder, ignore_errors=True)
        logger.warning("alpha search: %s finished: dev score %.1f", candidate_name(*candidate), self.objective)
        return result

    def _report_to_hp_search(self, trial, step: int, metrics: dict[str, float]) -> None:
        # ray keeps what a trial reports, not whether the scheduler stopped it: the step and the run's last tell;
        # and the setting the trial trained, as its worker unpacked it
        last_pass = step >= self.state.max_steps
        kept = {DEV_STATISTICS: json.dumps(self.dev_statistics)} if last_pass and self.dev_statistics else {}
        if self.hp_search_backend == HPSearchBackend.RAY:
            setting = {"alpha": self.alpha, "lm_scope": self.args.lm_scope}
            metrics = {**metrics, **setting, "step": step, "max_steps": self.state.max_steps, **kept}
        optuna_trial = self.hp_search_backend == HPSearchBackend.OPTUNA and trial is not None
        if optuna_trial and kept:  # before the trial can end: a trial kept after a kill keeps them too
            trial.set_user_attr(DEV_STATISTICS, self.dev_statistics)
        if optuna_trial and (not self.alpha or last_pass):
            # reported, never pruned: pooled, the baseline that a DHRD candidate must beat on dev to be shipped (it
            # runs first and finishes as a startup trial, but a search started again with pooled added runs it
            # last); and any trial's last pass, whose training is done (pruning it saves nothing and would drop a
            # finished trial from the medians; ray's record of a trial that reached its last step is complete too)
            self.objective = self.compute_objective(dict(metrics))
            trial.report(self.objective, step)
        else:
            super()._report_to_hp_search(trial, step, metrics)  # optuna: raises TrialPruned for a pruned trial
        if optuna_trial and last_pass:
            # the last pass, reported and not pruned, is the trial's result (the objective Trainer hands optuna):
            # a search killed before optuna hears that the trial ended keeps it
            final_pass(trial, time.time() - trial.datetime_start.timestamp())


def search_progress(study) -> str:
    """``2 of 9 candidates ended``: the search's candidates (its trials', enqueued ones included) and how many have
    a finished or pruned trial."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    ended = {optuna_candidate(t) for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    return f"{len(ended)} of {len({optuna_candidate(t) for t in trials})} candidates ended"


def check_same_search(saved: dict | None, base: DHRDTrainingArguments, where: str, option: str) -> None:
    """A search kept in ``where`` (its folder, or its ``--alpha-search-storage``: the ``option`` that names it)
    continues only under the settings it started with, ``saved``: its ended trials and its trials' checkpoints were
    trained under them (``resume.changed_settings``, as a plain run resumed; the candidates may differ: a new one is
    run, and each is scored on the same dev split)."""
    changed = changed_settings(saved, base) if saved else []
    refuse_other_settings(where, "an alpha search", changed, "search again", option)


def trial_folder(checkpoints: str | Path, alpha: float, scope: str) -> Path:
    """Where an optuna trial of the candidate keeps its checkpoint: ``trial-pooled``, ``trial-alpha0.1-all``."""
    name = "pooled" if not alpha else f"alpha{alpha:g}-{scope}"
    return Path(checkpoints) / f"trial-{name}"


def resume_trial(trial, checkpoint: str) -> None:
    """Carry over to ``trial`` what the candidate's killed trial had done up to ``checkpoint``: its dev passes, as
    optuna recorded them (the table shows every pass; the pruner compares the passes still to come), and the
    seconds it had trained (its checkpoint's ``RunClock``), which the trial's own time does not count."""
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    step, candidate = state.global_step, optuna_candidate(trial)
    killed = killed_trials(trial.study, candidate)
    passes = killed[-1].intermediate_values if killed else {}
    for at, value in sorted(passes.items()):
        if at <= step:
            trial.report(value, at)
    trial.set_user_attr(EARLIER_SECONDS, float(RunClock.kept_seconds(state) or 0.0))
    logger.warning("alpha search: resuming the trial of %s from %s", candidate_name(*candidate), checkpoint)


def search_arguments(args: DHRDTrainingArguments) -> DHRDTrainingArguments:
    """The trials' settings: the run's, with the LM loss on every token for the rows encoded first (the "all"
    candidates train on them; ``scope_sets`` encodes the others), whatever ``--lm-scope`` the run names."""
    return dataclasses.replace(
        args,
        output_dir=str(Path(args.output_dir) / SEARCH_DIR),
        alpha_search=False,
        method="dhrd",
        alpha=1.0,
        lm_scope="all",
        dev_fraction=args.dev_fraction or DEFAULT_DEV_FRACTION,
    )


def run_search(args: DHRDTrainingArguments) -> dict:
    """Run (or finish) the search; returns its table: every candidate's dev score, state and seconds."""
    candidates = args.search_candidates()
    base = search_arguments(args)
    folder = Path(base.output_dir)
    refuse_ray_storage(args, folder)  # before --restart removes anything
    if not args.resume and folder.is_dir():
        shutil.rmtree(folder)  # --restart: the search starts again, its trials and checkpoints discarded
    folder.mkdir(parents=True, exist_ok=True)
    storage = optuna_storage(args.alpha_search_storage, folder) if args.alpha_search_backend == "optuna" else None
    saved = folder / SEARCH_ARGS
    check_same_search(json.loads(saved.read_text()) if saved.is_file() else None, base, str(folder), "--output-dir")
    outside = args.alpha_search_storage  # trials kept outside the folder: their settings travel with them
    if outside:
        if not args.resume:
            forget_optuna_search(storage)  # --restart discards those too
        check_same_search(optuna_settings(storage), base, outside, "--alpha-search-storage")
        keep_optuna_settings(storage, base.to_dict())
    write_json_atomic(saved, base.to_dict())  # once every check has passed: a refused run changes nothing

    def make_trainer():
        return AlphaSearchTrainer(base, {scope if alpha else "pooled" for alpha, scope in candidates})

    records = BACKENDS[args.alpha_search_backend](folder, candidates, make_trainer, storage)
    table = search_table(records, candidates, base)
    # every trial has ended: nothing in their checkpoints folder resumes anything (a trial killed just after its last
    # pass left its folder; --save-steps's extra checkpoints, which earlier versions wrote to Trainer's run-<trial>
    # folders and never removed: 57 MB a trial for SmolLM2 with LoRA, up to nine a search)
    shutil.rmtree(checkpoints_folder(base.output_dir), ignore_errors=True)
    return table


def refuse_ray_storage(args: DHRDTrainingArguments, folder: Path) -> None:
    """``--alpha-search-storage`` is optuna's: ray keeps its experiment in the search folder."""
    if args.alpha_search_storage and args.alpha_search_backend != "optuna":
        raise DHRDInputError(
            "--alpha-search-storage is where optuna keeps the trials; ray keeps its experiment in "
            f"{folder / RAY_EXPERIMENT} (leave --alpha-search-storage out, or use --alpha-search-backend optuna)"
        )


def scope_sets(prepared, scopes: set[str]) -> dict:
    """The training rows encoded for the other candidates: LM loss on the reasoning only, and pooled (no
    rationales). The rows, tokenizer and dev carve are the prepared run's."""
    base = prepared.args
    settings = {"reasoning": dict(lm_scope="reasoning"), "pooled": dict(method="pooled", alpha=None)}
    return {
        scope: encode_rows(dataclasses.replace(base, **settings[scope]), prepared.rows, prepared.tokenizer).train_set
        for scope in scopes
        if scope in settings
    }


def evaluation_steps(args: DHRDTrainingArguments, train_rows: int) -> int:
    """Optimiser steps between a trial's dev passes: ``EVALUATIONS_PER_TRIAL`` passes over its training."""
    steps = math.ceil(train_rows / (args.per_device_train_batch_size * args.gradient_accumulation_steps))
    total = max(1, int(steps * args.num_train_epochs))
    return max(1, math.ceil(total / EVALUATIONS_PER_TRIAL))


def dev_statistics(eval_rows, probs, input_format: str) -> dict | None:
    """What a dev pass's score is made of, per dev example (``stats.example_statistics``: all integers), with its
    task: what pairs a candidate with pooled by example. None where the dev rows are of several tasks (their score
    averages the tasks', which the interval does not resample)."""
    tasks = {row.task for row in eval_rows}
    if len(tasks) != 1:
        return None
    task = tasks.pop()
    statistics = example_statistics(task, eval_rows, probs, input_format)
    return {"task": task, "statistics": {k: np.asarray(v).astype(int).tolist() for k, v in statistics.items()}}


def against_pooled(trial: TrialRecord, pooled: TrialRecord | None) -> dict | None:
    """A finished candidate's dev score minus pooled's, in points, with its 95% bootstrap interval over the dev
    examples (both scored on the same examples, so resampled together); None without both trials' statistics."""
    if pooled is None or trial is pooled or not trial.dev_statistics or not pooled.dev_statistics:
        return None
    task = pooled.dev_statistics["task"]

    def arrays(record: TrialRecord) -> dict:
        return {k: np.asarray(v) for k, v in record.dev_statistics["statistics"].items()}

    found = paired_difference(task, [arrays(pooled)], [arrays(trial)])
    return {k: found[k] for k in ("difference", "ci", "verdict", "examples")}


def search_table(records: list[TrialRecord], candidates, base: DHRDTrainingArguments) -> dict:
    latest = {}
    for r in records:  # in the order they ran; a complete trial outranks a pruned one of the same candidate
        key = (r.alpha, r.lm_scope)
        if key not in latest or not r.pruned or latest[key].pruned:
            latest[key] = r
    rows = []
    pooled_trial = next((t for (alpha, _), t in latest.items() if alpha == 0 and not t.pruned), None)
    for alpha, scope in candidates:
        trial = latest.get((alpha, scope))
        if trial is None:
            raise DHRDInputError(f"the alpha search has no finished trial for {candidate_name(alpha, scope)}")
        rows.append(
            {
                "candidate": candidate_name(alpha, scope),
                "alpha": alpha,
                "lm_scope": scope,
                "state": "pruned" if trial.pruned else "complete",
                "dev_score": None if trial.value is None else round(trial.value, 2),
                "dev_scores": {str(s): round(v, 2) for s, v in sorted(trial.dev_scores.items())},
                "seconds": round(trial.seconds, 1),
                "against_pooled": None if trial.pruned else against_pooled(trial, pooled_trial),
            }
        )
    complete = [r for r in rows if r["state"] == "complete"]
    # the best dev score; a tie goes to the smaller alpha (pooled first: it costs least to train)
    chosen = max(complete, key=lambda r: (r["dev_score"], -r["alpha"]))
    pooled = next((r for r in rows if r["alpha"] == 0), None)
    return {
        "chosen": chosen["candidate"],
        "alpha": chosen["alpha"],
        "lm_scope": chosen["lm_scope"],
        "dev_fraction": base.dev_fraction,
        "backend": base.alpha_search_backend,
        "candidates": rows,
        "search_seconds": round(sum(r["seconds"] for r in rows), 1),
        "pooled_trial_seconds": pooled["seconds"] if pooled else None,
        "trials_pruned": sum(r["state"] == "pruned" for r in rows),
    }


def search_markdown(table: dict) -> str:
    lines = [
        "# Alpha search",
        "",
        f"Candidates scored on a dev split of {table['dev_fraction']:g} of the training rows (seeded, stratified),",
        "each trained on the rest; the reported validation split was never seen. Chosen: "
        f"**{table['chosen']}**, then trained again on all the training rows.{chosen_lead(table)}",
        "",
        "| candidate | state | dev score | against pooled on dev (95% CI) | dev score at each pass | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in table["candidates"]:
        passes = ", ".join(f"{v:.1f}" for v in r["dev_scores"].values())
        score = "" if r["dev_score"] is None else f"{r['dev_score']:.1f}"
        lead = interval_text(r.get("against_pooled"))
        lines.append(f"| {r['candidate']} | {r['state']} | {score} | {lead} | {passes} | {r['seconds']:.0f} |")
    backend = table.get("backend", "optuna")
    lines += ["", f"Search cost: {search_cost(table)}, {table['trials_pruned']} trial(s) pruned ({backend}).", ""]
    return "\n".join(lines)


def search_cost(table: dict) -> str:
    """``1234 s of training over its trials (3.2x one pooled trial)``."""
    cost, pooled = table["search_seconds"], table.get("pooled_trial_seconds")
    return f"{cost:.0f} s of training over its trials" + (f" ({cost / pooled:.1f}x one pooled trial)" if pooled else "")


def interval_text(lead: dict | None) -> str:
    """``+2.6 [-2.1, +7.3]``, or empty where there is no paired interval (pooled itself, a pruned trial)."""
    if not lead:
        return ""
    low, high = lead["ci"]
    return f"{lead['difference']:+.1f} [{low:+.1f}, {high:+.1f}]"


def chosen_lead(table: dict) -> str:
    """What the chosen DHRD candidate's lead over pooled on dev is worth: a sentence, or nothing for pooled."""
    chosen = next((r for r in table["candidates"] if r["candidate"] == table["chosen"]), None)
    lead = chosen and chosen.get("against_pooled")
    if not lead:
        return ""
    text = (
        f" On dev it led pooled by {interval_text(lead)} points ({lead['examples']} dev examples, paired by example; "
        "the best of several candidates, so the interval flatters it)"
    )
    if lead["verdict"] == "gain":
        return text + "."
    return text + ": within the dev split's noise, so on new data it may do no better than pooled."


def read_search(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / f"{SEARCH_DIR}.json"
    return json.loads(path.read_text()) if path.is_file() else None
