"""``--alpha auto``: DHRD's loss weight (and its LM loss's scope) chosen on held-out training data.

The paper chose alpha per backbone on the validation split and found results sensitive to it. Here the choice never
sees the reported split: a seeded, stratified dev split is carved from the training rows (``carve_dev_split``),
every candidate (alpha 0, which is the pooled baseline, then each alpha x scope) trains on the rest and is scored on
it, through transformers' ``Trainer.hyperparameter_search`` with the optuna backend, a trial whose best score so far
is below the median of the finished trials at the same point pruned (from its second dev pass on). The winner is
trained again on all the training rows and saved, the search table beside it, by ``run.train_with_alpha_search`` (it
needs ``train``, which sits above this module). Pooled being a candidate, the search ships pooled unless another
candidate beat it on dev.

The study lives in ``<output_dir>/alpha-search/optuna.db``: a killed search keeps its finished trials and runs
only the others when started again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from ..errors import DHRDInputError
from .model_setup import reasoning_head
from .run_rows import encode_rows
from .trainer import DHRDTrainer
from .training_args import DHRDTrainingArguments

SEARCH_DIR = "alpha-search"
STUDY_NAME = "dhrd-alpha-search"
DEFAULT_DEV_FRACTION = 0.2
EVALUATIONS_PER_TRIAL = 4  # dev passes a trial reports, the points at which it can be pruned
# the first dev pass a trial can be pruned at: at the first (a quarter of a one-epoch run) the candidates were all
# within noise of the floor (ComVE, 1,000 rows: 49.5-52.5 on 200 dev rows, pooled lowest, then best at its third
# pass), so a prune there was a draw; from the second on, the scores have begun to separate
PRUNE_FROM_PASS = 2


def candidate_name(alpha: float, scope: str) -> str:
    return "pooled" if alpha == 0 else f"alpha {alpha:g}, lm-scope {scope}"


class AlphaSearchTrainer(DHRDTrainer):
    """A DHRDTrainer whose trials set ``alpha`` and ``lm_scope``: each trial trains a fresh model
    (``model_init``) on the training rows encoded for its scope (pooled: without rationales)."""

    def __init__(self, args: DHRDTrainingArguments, scopes: set[str]):
        # dev passes every eval_steps (set below, once the rows are counted), no checkpoints, the dev score
        trial = dict(eval_strategy="steps", save_strategy="no", load_best_model_at_end=False)
        super().__init__(args=args, trainer_overrides={**trial, "metric_for_best_model": "score"})
        self.train_sets = {"all": self.train_dataset, **scope_sets(self.prepared, scopes)}
        self.args.eval_steps = evaluation_steps(args, len(self.train_dataset))
        self.model_init = self.trial_model  # Trainer builds each trial's model with it

    def trial_model(self, trial=None):
        """A freshly initialised model, whose reasoning head the loss then reads."""
        model, classifier, causal_lm = self.prepared.model_parts()
        self.reasoning_weight = reasoning_head(classifier, causal_lm)
        return model

    def _hp_search_setup(self, trial) -> None:
        super()._hp_search_setup(trial)  # sets args.alpha and args.lm_scope from the trial's parameters
        if trial is None:
            return
        self.alpha = float(self.args.alpha)
        self.train_dataset = self.train_sets["pooled" if not self.alpha else self.args.lm_scope]


def search_arguments(args: DHRDTrainingArguments) -> DHRDTrainingArguments:
    return dataclasses.replace(
        args,
        output_dir=str(Path(args.output_dir) / SEARCH_DIR),
        alpha_search=False,
        method="dhrd",
        alpha=1.0,
        dev_fraction=args.dev_fraction or DEFAULT_DEV_FRACTION,
    )


def _study(storage: str):
    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study(direction="maximize", storage=storage, study_name=STUDY_NAME, load_if_exists=True)
    for trial in study.trials:  # a trial that was running when its process was killed never finishes
        if trial.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return study


def candidate_key(trial) -> tuple[float, str]:
    """The (alpha, lm_scope) candidate a trial runs. An enqueued trial that has not started (WAITING, as a killed
    search leaves those it had not reached) has no params yet: its candidate is in ``fixed_params``."""
    params = trial.params or trial.system_attrs.get("fixed_params", {})
    return float(params["alpha"]), "all" if not float(params["alpha"]) else params["lm_scope"]


def run_search(args: DHRDTrainingArguments) -> dict:
    """Run (or finish) the search; returns its table: every candidate's dev score, state and seconds."""
    import optuna
    from optuna.trial import TrialState

    candidates = args.search_candidates()
    base = search_arguments(args)
    folder = Path(base.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'optuna.db'}"
    study = _study(storage)
    ended = {candidate_key(t) for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    waiting = {candidate_key(t) for t in study.trials if t.state == TrialState.WAITING}
    pending = [c for c in candidates if c not in ended]
    for alpha, scope in pending:
        if (alpha, scope) not in waiting:
            study.enqueue_trial({"alpha": alpha, "lm_scope": scope})
    if pending:
        _optimise(base, candidates, storage, len(pending))
    return search_table(optuna.load_study(study_name=STUDY_NAME, storage=storage), candidates, base)


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


def _optimise(base: DHRDTrainingArguments, candidates, storage: str, trials: int) -> None:
    import optuna

    trainer = AlphaSearchTrainer(base, {scope if alpha else "pooled" for alpha, scope in candidates})
    alphas = sorted({a for a, _ in candidates})
    scope_names = sorted({s for _, s in candidates})

    def hp_space(trial):
        return {
            "alpha": trial.suggest_categorical("alpha", alphas),
            "lm_scope": trial.suggest_categorical("lm_scope", scope_names),
        }

    trainer.hyperparameter_search(
        direction="maximize",
        backend="optuna",
        hp_space=hp_space,
        n_trials=trials,
        compute_objective=lambda metrics: metrics["eval_score"],
        study_name=STUDY_NAME,
        storage=storage,
        load_if_exists=True,
        # a trial whose best dev score so far is below the median of the finished trials at the same pass (from
        # PRUNE_FROM_PASS on) stops there; the first two (pooled, then the first DHRD candidate) always finish.
        # Trainer reports a pass at its optimiser step, and optuna prunes from the step that reaches n_warmup_steps
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=2, n_warmup_steps=PRUNE_FROM_PASS * trainer.args.eval_steps
        ),
    )


def search_table(study, candidates, base: DHRDTrainingArguments) -> dict:
    from optuna.trial import TrialState

    latest = {}
    for trial in study.trials:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            latest[candidate_key(trial)] = trial
    rows = []
    for alpha, scope in candidates:
        trial = latest.get((alpha, scope))
        if trial is None:
            raise DHRDInputError(f"the alpha search has no finished trial for {candidate_name(alpha, scope)}")
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        steps = sorted(trial.intermediate_values)
        rows.append(
            {
                "candidate": candidate_name(alpha, scope),
                "alpha": alpha,
                "lm_scope": scope,
                "state": "pruned" if trial.state == TrialState.PRUNED else "complete",
                "dev_score": None if trial.value is None else round(float(trial.value), 2),
                "dev_scores": {str(s): round(float(trial.intermediate_values[s]), 2) for s in steps},
                "seconds": round(seconds, 1),
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
        f"**{table['chosen']}**, then trained again on all the training rows.",
        "",
        "| candidate | state | dev score | dev score at each pass | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in table["candidates"]:
        passes = ", ".join(f"{v:.1f}" for v in r["dev_scores"].values())
        score = "" if r["dev_score"] is None else f"{r['dev_score']:.1f}"
        lines.append(f"| {r['candidate']} | {r['state']} | {score} | {passes} | {r['seconds']:.0f} |")
    cost = table["search_seconds"]
    pooled = table.get("pooled_trial_seconds")
    ratio = f" ({cost / pooled:.1f}x one pooled trial)" if pooled else ""
    lines += ["", f"Search cost: {cost:.0f} s{ratio}, {table['trials_pruned']} trial(s) pruned.", ""]
    return "\n".join(lines)


def read_search(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / f"{SEARCH_DIR}.json"
    return json.loads(path.read_text()) if path.is_file() else None
