"""--alpha auto: the dev split carved from the training rows, the search through Trainer.hyperparameter_search."""

import json
from collections import Counter

import pytest
from conftest import tiny_run, write_jsonl

from dhrd import DHRDTrainingArguments, train
from dhrd.data.examples import Example
from dhrd.data.task_splits import load_task_split
from dhrd.errors import DHRDInputError
from dhrd.training.argparser import parse_train_arguments
from dhrd.training.prepare import prepare_parts
from dhrd.training.run_rows import carve_dev_split

pytest.importorskip("optuna", reason="--alpha auto needs optuna")


def _examples(n, labels=(0, 1, 2)):
    return [Example(f"e{i}", "custom", f"text {i}", labels[i % len(labels)], f"e{i}") for i in range(n)]


def test_the_dev_split_is_seeded_stratified_and_disjoint():
    rows = _examples(60)
    fit, dev = carve_dev_split(rows, 0.2, seed=3)
    assert len(dev) == 12 and len(fit) == 48
    assert not {e.id for e in fit} & {e.id for e in dev} and len(fit) + len(dev) == len(rows)
    assert Counter(e.label for e in dev) == {0: 4, 1: 4, 2: 4}  # stratified
    assert carve_dev_split(rows, 0.2, seed=3) == (fit, dev)  # seeded
    assert carve_dev_split(rows, 0.2, seed=4)[1] != dev
    assert [e.id for e in fit] == sorted((e.id for e in fit), key=lambda i: int(i[1:]))  # original order


def test_the_dev_split_keeps_an_examples_rows_together():
    rows = [Example(f"e{i}-{k}", "cb", "t", int(k == i % 3), f"e{i}", str(k)) for i in range(20) for k in range(3)]
    fit, dev = carve_dev_split(rows, 0.25, seed=0)
    assert {e.group for e in fit}.isdisjoint({e.group for e in dev})
    assert all(Counter(e.group for e in dev)[g] == 3 for g in {e.group for e in dev})


def test_the_dev_split_never_overlaps_the_scored_split(tmp_path, tiny_backbone, superglue_dir):
    args = DHRDTrainingArguments(
        output_dir=str(tmp_path / "run"), dev_fraction=0.25, **tiny_run(tiny_backbone, superglue_dir)
    )
    prepared = prepare_parts(args)
    # ids are per split (both files count idx from 0): the rows are told apart by their texts, which differ
    train_texts = {e.text for e in load_task_split("cb", "train", "yesno", superglue_dir)}
    scored_texts = {e.text for e in load_task_split("cb", "validation", "yesno", superglue_dir)}
    assert not train_texts & scored_texts  # the premise of the test
    dev, fit = {e.text for e in prepared.eval_rows}, {e.text for e in prepared.train_rows}
    assert dev and dev <= train_texts and not dev & fit and dev | fit == train_texts
    assert not dev & scored_texts


def test_alpha_auto_on_the_command_line_and_in_python():
    assert parse_train_arguments(["--task", "cb", "--alpha", "auto"]).alpha_search
    assert parse_train_arguments(["--task", "cb", "--alpha=auto"]).alpha_search
    assert parse_train_arguments(["--task", "cb", "--alpha", "0.5"]).alpha == 0.5
    args = DHRDTrainingArguments(task="cb", alpha="auto", output_dir="x")
    assert args.alpha_search and args.alpha is None
    assert args.search_candidates() == [
        (0.0, "all"),
        (0.1, "all"),
        (0.1, "reasoning"),
        (0.25, "all"),
        (0.25, "reasoning"),
        (0.5, "all"),
        (0.5, "reasoning"),
        (1.0, "all"),
        (1.0, "reasoning"),
    ]
    with pytest.raises(DHRDInputError, match="alpha-candidates"):
        DHRDTrainingArguments(task="cb", alpha_search=True, alpha_candidates="a,b", output_dir="x").validate()
    with pytest.raises(DHRDInputError, match="dev-fraction"):
        DHRDTrainingArguments(task="cb", dev_fraction=1.5, output_dir="x").validate()


def _rationales(tmp_path):
    return write_jsonl(tmp_path / "cb.jsonl", [{"idx": i, "rationale": f"Ann said so on day {i}."} for i in range(12)])


def test_auto_with_pooled_best_saves_a_pooled_model_with_its_table(tmp_path, tiny_backbone, superglue_dir, monkeypatch):
    """The tiny untrained backbone answers one class whatever the candidate: every dev score ties, and a tie
    goes to pooled (the smallest alpha)."""
    from dhrd.training import tuning

    trials = []
    setup = tuning.AlphaSearchTrainer._hp_search_setup

    def recording_setup(self, trial):
        setup(self, trial)
        if trial is not None:
            rows = self.train_dataset
            targets = sum(sum(t != -100 for t in r["lm_labels"][1:]) for r in rows) if "lm_labels" in rows[0] else 0
            trials.append((self.alpha, self.args.lm_scope, targets))

    monkeypatch.setattr(tuning.AlphaSearchTrainer, "_hp_search_setup", recording_setup)
    output = tmp_path / "auto"
    settings = tiny_run(tiny_backbone, superglue_dir, learning_rate=1e-9)
    args = DHRDTrainingArguments(
        output_dir=str(output),
        alpha="auto",
        alpha_candidates="0,1",
        lm_scope_candidates="all,reasoning",
        lm_scope="reasoning",  # the run's own scope: each candidate's scope is the candidate's
        rationales=str(_rationales(tmp_path)),
        **settings,
    )
    result = train(args)
    table = json.loads((output / "alpha-search.json").read_text())
    assert [r["candidate"] for r in table["candidates"]] == [
        "pooled",
        "alpha 1, lm-scope all",
        "alpha 1, lm-scope reasoning",
    ]
    # each trial trained its own candidate: pooled without LM targets, the reasoning scope with fewer than all
    assert [(a, s) for a, s, _ in trials] == [(0.0, "all"), (1.0, "all"), (1.0, "reasoning")]
    assert trials[0][2] == 0 and trials[1][2] > trials[2][2] > 0
    scores = {r["dev_score"] for r in table["candidates"] if r["state"] == "complete"}
    assert len(scores) == 1, table  # the premise of the test: a tie
    assert table["chosen"] == "pooled" and table["alpha"] == 0
    from dhrd.training.search_backends import _optuna_record

    _leads_follow_the_kept_statistics(table, [_optuna_record(t) for t in _search_trials(output)])
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["dhrd"]["method"] == "pooled" and config["dhrd"]["alpha"] == 0
    assert (result.model_dir / "alpha-search.md").is_file() and (output / "alpha-search.md").is_file()
    assert result.metrics["alpha_search"]["chosen"] == "pooled"
    # "score" ranked the trials, but one epoch leaves no epoch to choose: the run says none was (the CLI prints
    # "last epoch", not "best epoch by score")
    assert result.metrics["metric_for_best_model"] is None
    assert json.loads((output / "metrics.json").read_text())["alpha_search"]["chosen"] == "pooled"
    # started again, from the command line: the finished trials are read back, none trains again, and the search
    # is printed with what was chosen
    from typer.testing import CliRunner

    from dhrd.cli.commands import app

    db = output / "alpha-search" / "optuna.db"
    before = db.stat().st_mtime_ns
    flags = dict(task="cb", data_dir=superglue_dir, backbone=tiny_backbone, output_dir=output, epochs=1, batch_size=4,
                 max_length=128, learning_rate=1e-9, alpha="auto", alpha_candidates="0,1",
                 lm_scope_candidates="all,reasoning", rationales=args.rationales)  # fmt: skip
    command = [word for k, v in flags.items() for word in (f"--{k.replace('_', '-')}", str(v))]
    printed = CliRunner().invoke(app, ["train", *command, "--no-bf16"])
    assert printed.exit_code == 0, printed.output
    assert "alpha search on a dev split of 0.2" in printed.output and "chosen: pooled" in printed.output
    # both DHRD candidates (a tie on the untrained model: the same answers) against pooled on dev
    assert printed.output.count("+0.0 [+0.0, +0.0]") == 2 and "reasoning" in printed.output
    import optuna

    study = optuna.load_study(study_name="dhrd-alpha-search", storage=f"sqlite:///{db}")
    assert len(study.trials) == 3 and before <= db.stat().st_mtime_ns


def _killed_in_trial(monkeypatch, n):
    """Make the search raise "killed" as its n-th trial starts (a kill with what came before kept); returns a
    function that puts the real trial setup back."""
    from dhrd.training import tuning

    setup, started = tuning.AlphaSearchTrainer._hp_search_setup, []

    def stopping_setup(self, trial):
        if trial is not None:
            started.append(trial)
            if len(started) == n:
                raise RuntimeError("killed")
        setup(self, trial)

    monkeypatch.setattr(tuning.AlphaSearchTrainer, "_hp_search_setup", stopping_setup)
    return lambda: monkeypatch.setattr(tuning.AlphaSearchTrainer, "_hp_search_setup", setup)


def _search_trials(output):
    """The trials of the optuna search kept under a run's output directory."""
    import optuna

    storage = f"sqlite:///{output / 'alpha-search' / 'optuna.db'}"
    return optuna.load_study(study_name="dhrd-alpha-search", storage=storage).trials


def _three_trial_search(tmp_path, tiny_backbone, superglue_dir) -> DHRDTrainingArguments:
    """A search of three trials (pooled, alpha 0.5 and alpha 1, the LM loss on every token) into ``tmp_path/auto``:
    two epochs of batches of 2, so that each trial has its four dev passes."""
    # one checkpoint kept, as the studies run: Trainer's end of training then removes the others but the best pass's
    settings = tiny_run(
        tiny_backbone, superglue_dir, num_train_epochs=2, per_device_train_batch_size=2, save_total_limit=1
    )
    return DHRDTrainingArguments(
        output_dir=str(tmp_path / "auto"), alpha="auto", alpha_candidates="0,0.5,1", lm_scope_candidates="all",
        rationales=str(_rationales(tmp_path)), **settings,
    )  # fmt: skip


def _fixed_dev_scores(monkeypatch, scores):
    """Make every dev pass score by the trial's alpha alone; returns the alphas of the passes, in order."""
    from dhrd.training import tuning

    passes = []

    def fixed_evaluate(self, *args, **kwargs):
        passes.append(self.alpha)
        return {"eval_score": scores[self.alpha]}

    monkeypatch.setattr(tuning.AlphaSearchTrainer, "evaluate", fixed_evaluate)
    return passes


def test_a_trial_below_the_median_is_pruned_and_cannot_be_chosen(
    tmp_path, tiny_backbone, superglue_dir, monkeypatch, caplog
):
    """Dev scores fixed by alpha (pooled 60, alpha 0.5 55, alpha 1 40): the third trial is below the median of
    the two before it from its first dev pass, and stops at the first pass where pruning is on (the second: at
    the first, candidates are within noise of each other)."""
    from dhrd.training import search_backends

    passes = _fixed_dev_scores(monkeypatch, {0.0: 60.0, 0.5: 55.0, 1.0: 40.0})
    output = tmp_path / "auto"
    train(_three_trial_search(tmp_path, tiny_backbone, superglue_dir))
    table = json.loads((output / "alpha-search.json").read_text())
    states = {r["candidate"]: r["state"] for r in table["candidates"]}
    assert states == {"pooled": "complete", "alpha 0.5, lm-scope all": "complete", "alpha 1, lm-scope all": "pruned"}
    # the finished trials were scored at each of their dev passes (every quarter of the run, and at its end)
    assert passes.count(0.0) == passes.count(0.5) >= search_backends.EVALUATIONS_PER_TRIAL
    assert passes.count(1.0) == search_backends.PRUNE_FROM_PASS == 2
    assert table["chosen"] == "pooled" and table["trials_pruned"] == 1
    assert "pruned" in (output / "alpha-search.md").read_text()
    # each trial said which candidate it trained, how far the search was, and how the trial ended
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alpha search: ")]
    steps = table["candidates"][0]["dev_scores"]
    pruned_at, last = list(steps)[search_backends.PRUNE_FROM_PASS - 1], list(steps)[-1]
    assert said[:6] == [
        "alpha search: training pooled (0 of 3 candidates ended)",
        "alpha search: pooled finished: dev score 60.0",
        "alpha search: training alpha 0.5, lm-scope all (1 of 3 candidates ended)",
        "alpha search: alpha 0.5, lm-scope all finished: dev score 55.0",
        "alpha search: training alpha 1, lm-scope all (2 of 3 candidates ended)",
        f"alpha search: alpha 1, lm-scope all pruned at step {pruned_at} of {last}: its dev score 40.0 is below the "
        "median of the finished trials at that pass",
    ], said


def test_a_search_killed_with_trials_waiting_resumes(tmp_path, tiny_backbone, superglue_dir, monkeypatch):
    """A search stopped in its second trial leaves the third enqueued and never started (WAITING, no params yet):
    run again, it reads that candidate from the trial's fixed params, trains what is left and finishes."""
    from optuna.trial import TrialState

    resume = _killed_in_trial(monkeypatch, 2)
    output = tmp_path / "auto"
    settings = tiny_run(tiny_backbone, superglue_dir, learning_rate=1e-9)
    args = DHRDTrainingArguments(
        output_dir=str(output), alpha="auto", alpha_candidates="0,1", lm_scope_candidates="all,reasoning",
        rationales=str(_rationales(tmp_path)), **settings,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="killed"):
        train(args)
    states = [t.state for t in _search_trials(output)]
    assert TrialState.WAITING in states  # the premise: a candidate enqueued and never started
    resume()
    train(args)
    table = json.loads((output / "alpha-search.json").read_text())
    assert [r["state"] for r in table["candidates"]] == ["complete"] * 3 and table["chosen"] == "pooled"


def test_a_killed_search_resumes_in_the_unbroken_order(tmp_path, tiny_backbone, superglue_dir, monkeypatch):
    """A search killed in its second trial (alpha 0.5) runs alpha 0.5 again before alpha 1, as the unbroken search
    did: the pruner judges a trial by those that finished before it, and alpha 0.5 (below pooled and alpha 1) run
    after both would be pruned where the unbroken search finished it (before, it was enqueued again last)."""
    import dataclasses

    scores = {0.0: 60.0, 0.5: 40.0, 1.0: 70.0}
    passes = _fixed_dev_scores(monkeypatch, scores)
    base = _three_trial_search(tmp_path, tiny_backbone, superglue_dir)
    unbroken = dataclasses.replace(base, output_dir=str(tmp_path / "unbroken"))
    train(unbroken)
    expected = json.loads((tmp_path / "unbroken" / "alpha-search.json").read_text())
    assert [r["state"] for r in expected["candidates"]] == ["complete"] * 3  # the premise: nothing pruned unbroken

    resume = _killed_in_trial(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="killed"):
        train(base)
    resume()
    before = len(passes)
    train(base)
    after = passes[before:]
    assert after[0] == 0.5 and after[-1] == 1.0 and sorted(after) == after, after
    table = json.loads((tmp_path / "auto" / "alpha-search.json").read_text())
    keys = ("candidate", "state", "dev_score", "dev_scores")
    assert [{k: r[k] for k in keys} for r in table["candidates"]] == [
        {k: r[k] for k in keys} for r in expected["candidates"]
    ]
    assert table["chosen"] == expected["chosen"] == "alpha 1, lm-scope all"


def test_a_trial_killed_after_its_last_dev_pass_is_kept(tmp_path, tiny_backbone, superglue_dir, monkeypatch):
    """A search killed after a trial reported its last dev pass but before optuna heard that the trial ended (a
    ComVE search lost a finished 25-minute trial so): run again, it keeps that trial complete, with its last pass's
    score and the time it took to reach it, and trains only the candidates that had not ended."""
    from optuna.trial import TrialState

    from dhrd.training import tuning

    passes = _fixed_dev_scores(monkeypatch, {0.0: 60.0, 0.5: 70.0, 1.0: 50.0})
    real_final_pass, finished = tuning.final_pass, []

    def killed_after_second(trial, seconds):
        real_final_pass(trial, seconds)
        finished.append(trial.number)
        if len(set(finished)) == 2:  # the last step can be reported twice (its pass, then the run's end)
            raise SystemExit("killed")  # not an Exception: optuna leaves the trial running, as a kill does

    monkeypatch.setattr(tuning, "final_pass", killed_after_second)
    output = tmp_path / "auto"
    args = _three_trial_search(tmp_path, tiny_backbone, superglue_dir)
    with pytest.raises(SystemExit, match="killed"):
        train(args)
    killed = _search_trials(output)[1]
    assert killed.state == TrialState.RUNNING and killed.params["alpha"] == 0.5  # the premise
    reached = killed.user_attrs["final_pass_seconds"]
    before = len(passes)
    train(args)
    assert 0.5 not in passes[before:] and 1.0 in passes[before:]  # only alpha 1 trained after the kill
    table = json.loads((output / "alpha-search.json").read_text())
    kept = next(r for r in table["candidates"] if r["alpha"] == 0.5)
    assert kept["state"] == "complete" and kept["dev_score"] == 70.0 and kept["seconds"] == round(reached, 1)
    assert table["chosen"] == "alpha 0.5, lm-scope all"
    assert [t.state for t in _search_trials(output)] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]


def test_a_killed_trial_resumes_from_its_checkpoint(tmp_path, tiny_backbone, superglue_dir, monkeypatch):
    """A search killed in a trial (alpha 0.5, after its second dev pass's checkpoint): run again, that trial
    resumes from the checkpoint and trains only the passes after it; its row has all four passes and the seconds
    of both processes. A trial that has ended leaves no checkpoint, nor does the finished search."""
    from dhrd.training import tuning
    from dhrd.training.search_backends import EARLIER_SECONDS, optuna_candidate

    passes = _fixed_dev_scores(monkeypatch, {0.0: 60.0, 0.5: 70.0, 1.0: 50.0})
    save, saved = tuning.AlphaSearchTrainer._save_checkpoint, []

    def killed_after_second_save(self, model, trial):
        save(self, model, trial)
        saved.append((self.alpha, self.state.global_step))
        if saved.count((0.5, 2 * self.args.eval_steps)):
            raise SystemExit("killed")  # not an Exception: optuna leaves the trial running, as a kill does

    monkeypatch.setattr(tuning.AlphaSearchTrainer, "_save_checkpoint", killed_after_second_save)
    args = _three_trial_search(tmp_path, tiny_backbone, superglue_dir)
    with pytest.raises(SystemExit, match="killed"):
        train(args)
    trials = tmp_path / "auto" / "alpha-search" / "checkpoints"
    step = saved[-1][1]
    assert [p.name for p in trials.iterdir()] == ["trial-alpha0.5-all"]  # pooled ended: its folder is gone
    assert [p.name for p in (trials / "trial-alpha0.5-all").iterdir()] == [f"checkpoint-{step}"]  # the last only
    monkeypatch.setattr(tuning.AlphaSearchTrainer, "_save_checkpoint", save)
    before = len(passes)
    train(args)
    # the resumed alpha 0.5 first, in its place: its last two passes (the last reported twice: its pass, then the
    # run's end); then alpha 1, below both, pruned at its second pass, as in the unbroken search
    after = passes[before:]
    assert after == [0.5] * 3 + [1.0] * 2, after
    table = json.loads((tmp_path / "auto" / "alpha-search.json").read_text())
    resumed = next(r for r in table["candidates"] if r["alpha"] == 0.5)
    assert resumed["state"] == "complete" and list(resumed["dev_scores"].values()) == [70.0] * 4
    assert [int(s) for s in resumed["dev_scores"]][:3] == [step // 2, step, 3 * step // 2]  # then the last step
    trial = next(
        t for t in _search_trials(tmp_path / "auto") if t.state.name == "COMPLETE" and optuna_candidate(t)[0] == 0.5
    )
    assert 0 < trial.user_attrs[EARLIER_SECONDS] < resumed["seconds"]
    assert table["chosen"] == "alpha 0.5, lm-scope all" and not trials.exists()  # every trial's checkpoint gone


def test_a_search_continues_only_under_its_settings_and_restart_discards_it(
    tmp_path, tiny_backbone, superglue_dir, monkeypatch
):
    """Its ended trials (and its trials' checkpoints) were trained under the settings it started with: started
    again with another learning rate, the search refuses in one line, as a plain run does; --restart searches again
    from nothing."""
    import dataclasses

    _fixed_dev_scores(monkeypatch, {0.0: 60.0, 1.0: 50.0})
    settings = tiny_run(tiny_backbone, superglue_dir, learning_rate=1e-4)
    args = DHRDTrainingArguments(
        output_dir=str(tmp_path / "auto"), alpha="auto", alpha_candidates="0,1", lm_scope_candidates="all",
        rationales=str(_rationales(tmp_path)), **settings,
    )  # fmt: skip
    train(args)
    assert len(_search_trials(tmp_path / "auto")) == 2
    with pytest.raises(DHRDInputError, match=r"holds an alpha search with other settings \(learning_rate\).*--restart"):
        train(dataclasses.replace(args, learning_rate=2e-4))
    train(dataclasses.replace(args, learning_rate=2e-4, resume=False))
    assert len(_search_trials(tmp_path / "auto")) == 2  # a new study, not the old one's two trials and two more
    saved = json.loads((tmp_path / "auto" / "alpha-search" / "search_args.json").read_text())
    assert saved["learning_rate"] == 2e-4


@pytest.mark.slow
def test_the_ray_backend_runs_each_candidate_and_resumes(tmp_path, tiny_backbone, superglue_dir):
    """--alpha-search-backend ray on a local ray: each candidate a trial of one grid search, each trained as its own
    candidate (reported by the trial's worker), every dev pass kept, the same table and choice as optuna's (a tie
    on the untrained model goes to pooled); started again, the ended trials are read back and none runs."""
    pytest.importorskip("ray", reason="the ray backend needs ray: pip install 'dhrd[ray]'")
    import ray
    import torch
    from accelerate.state import GradientState
    from ray.tune import ExperimentAnalysis

    output = tmp_path / "auto"
    settings = tiny_run(tiny_backbone, superglue_dir, learning_rate=1e-9)
    args = DHRDTrainingArguments(
        output_dir=str(output), alpha="auto", alpha_candidates="0,1", lm_scope_candidates="all,reasoning",
        alpha_search_backend="ray", rationales=str(_rationales(tmp_path)), **settings,
    )  # fmt: skip
    # a loop an earlier run of this process left before its end (accelerate keeps a weak reference to its dataloader
    # in the state its Accelerators share, which ray, pickling the trainer, cannot): the search starts regardless
    left = torch.utils.data.DataLoader(range(4))
    GradientState()._add_dataloader(left)
    try:
        result = train(args)
    finally:
        ray.shutdown()
    table = json.loads((output / "alpha-search.json").read_text())
    assert table["backend"] == "ray"
    assert [r["candidate"] for r in table["candidates"]] == [
        "pooled",
        "alpha 1, lm-scope all",
        "alpha 1, lm-scope reasoning",
    ]
    assert all(r["state"] == "complete" and len(r["dev_scores"]) >= 1 for r in table["candidates"]), table
    experiment = output / "alpha-search" / "ray"
    trials = ExperimentAnalysis(str(experiment)).trials
    trained = sorted((t.last_result["alpha"], t.last_result["lm_scope"]) for t in trials)
    assert trained == [(0.0, "all"), (1.0, "all"), (1.0, "reasoning")]
    assert table["chosen"] == "pooled"
    from dhrd.training.search_backends import _ray_records

    _leads_follow_the_kept_statistics(table, _ray_records(experiment, args.search_candidates()))
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["dhrd"]["method"] == "pooled"
    state = sorted(experiment.glob("experiment_state-*.json"))
    before = [p.stat().st_mtime_ns for p in state]
    train(args)  # started again: read back, no ray started, no trial run
    assert not ray.is_initialized()
    assert [p.stat().st_mtime_ns for p in sorted(experiment.glob("experiment_state-*.json"))] == before


def test_a_ray_trial_is_unpacked_into_its_candidate(tmp_path, tiny_backbone, superglue_dir):
    """ray hands a trial its grid point as {"candidate": {...}}: the trainer sets that alpha and scope and trains on
    the rows encoded for them (pooled without LM targets), as an optuna trial does."""
    from transformers.trainer_utils import HPSearchBackend

    from dhrd.training import tuning

    args = DHRDTrainingArguments(
        output_dir=str(tmp_path / "auto"), alpha="auto", rationales=str(_rationales(tmp_path)),
        **tiny_run(tiny_backbone, superglue_dir),
    )  # fmt: skip
    trainer = tuning.AlphaSearchTrainer(tuning.search_arguments(args), {"all", "reasoning", "pooled"})
    trainer.hp_search_backend = HPSearchBackend.RAY
    for alpha, scope, rows in [(1.0, "reasoning", "reasoning"), (0.0, "all", "pooled"), (0.5, "all", "all")]:
        trainer._hp_search_setup({"candidate": {"alpha": alpha, "lm_scope": scope}})
        assert (trainer.alpha, trainer.args.lm_scope) == (alpha, scope)
        assert trainer.train_dataset is trainer.train_sets[rows]


def test_the_ray_backend_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    from dhrd.training.search_backends import ray_trials

    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray fails as where it is not installed
    with pytest.raises(DHRDInputError, match=r"pip install 'dhrd\[ray\]'"):
        ray_trials(tmp_path, [(0.0, "all")], make_trainer=lambda: None)


def test_the_search_table_reads_either_backends_trials():
    """One record shape from optuna or ray: pruned trials have no final score and cannot be chosen, a tie goes
    to the smaller alpha, the cost is the trials' seconds against the pooled trial's."""
    from dhrd.training.search_backends import TrialRecord
    from dhrd.training.tuning import search_markdown, search_table

    records = [
        TrialRecord(0.0, "all", False, 55.0, {2: 50.0, 4: 55.0}, 10.0),
        TrialRecord(1.0, "all", True, None, {2: 40.0}, 6.0),
        TrialRecord(0.5, "reasoning", False, 55.0, {2: 52.0, 4: 55.0}, 14.0),
    ]
    base = DHRDTrainingArguments(task="cb", output_dir="x", dev_fraction=0.2, alpha_search_backend="ray")
    table = search_table(records, [(0.0, "all"), (0.5, "reasoning"), (1.0, "all")], base)
    assert table["chosen"] == "pooled" and table["backend"] == "ray" and table["trials_pruned"] == 1
    passes = [r["dev_scores"] for r in table["candidates"]]
    assert passes == [{"2": 50.0, "4": 55.0}, {"2": 52.0, "4": 55.0}, {"2": 40.0}]
    assert table["search_seconds"] == 30.0 and table["pooled_trial_seconds"] == 10.0
    assert "3.0x one pooled trial" in search_markdown(table) and "(ray)" in search_markdown(table)
    records[2].value = 56.0
    assert search_table(records, [(0.0, "all"), (0.5, "reasoning"), (1.0, "all")], base)["lm_scope"] == "reasoning"
    with pytest.raises(DHRDInputError, match="no finished trial for alpha 0.25"):
        search_table(records, [(0.0, "all"), (0.25, "all")], base)


def _correct(*answers):
    return {"task": "rte", "statistics": {"correct": list(answers)}}


def test_each_candidate_is_paired_with_pooled_by_dev_example():
    """A finished candidate's lead over pooled is its dev score minus pooled's, with a bootstrap interval over the
    dev examples: on 10 examples a 20-point lead (2 examples) is within noise, and the report says so; on 100, a
    30-point lead is a gain. Pooled, a pruned trial and a trial kept without statistics have none."""
    from dhrd.training.search_backends import TrialRecord
    from dhrd.training.tuning import search_markdown, search_table

    base = DHRDTrainingArguments(task="rte", output_dir="x", dev_fraction=0.2)
    candidates = [(0.0, "all"), (0.1, "all"), (0.5, "all"), (1.0, "all")]
    pooled = TrialRecord(0.0, "all", False, 50.0, {4: 50.0}, 10.0, _correct(*[1, 0] * 5))
    records = [
        pooled,
        TrialRecord(0.1, "all", False, 70.0, {4: 70.0}, 12.0, _correct(1, 1, 1, 0, 1, 1, 1, 0, 1, 0)),
        TrialRecord(0.5, "all", True, None, {2: 30.0}, 6.0),
        TrialRecord(1.0, "all", False, 40.0, {4: 40.0}, 12.0),  # kept by a version without the statistics
    ]
    table = search_table(records, candidates, base)
    leads = [r["against_pooled"] for r in table["candidates"]]
    assert leads[0] is None and leads[2] is None and leads[3] is None
    assert table["chosen"] == "alpha 0.1, lm-scope all"
    assert leads[1]["difference"] == 20.0 and leads[1]["examples"] == 10
    low, high = leads[1]["ci"]
    # the two examples only the candidate answered are left out of a tenth of the resamples: the lower end is 0
    assert low == 0.0 and 20.0 < high <= 50.0 and leads[1]["verdict"] == "no measurable difference"
    text = search_markdown(table)
    assert "+20.0 [+0.0, " in text and "within the dev split's noise" in text and "the best of several" in text
    assert "| pooled | complete | 50.0 |  |" in text and "| alpha 1, lm-scope all | complete | 40.0 |  |" in text

    records[0] = TrialRecord(0.0, "all", False, 50.0, {4: 50.0}, 10.0, _correct(*[1, 0] * 50))
    records[1] = TrialRecord(0.1, "all", False, 80.0, {4: 80.0}, 12.0, _correct(*[1, 1, 1, 1, 1, 0, 1, 0, 1, 1] * 10))
    lead = search_table(records, candidates, base)["candidates"][1]["against_pooled"]
    assert lead["difference"] == 30.0 and lead["ci"][0] > 15 and lead["verdict"] == "gain"
    assert "within the dev split's noise" not in search_markdown(search_table(records, candidates, base))


def _leads_follow_the_kept_statistics(table, records):
    """Each finished trial kept its last dev pass's statistics, row for row: they give its dev score; and each
    finished candidate's lead over pooled in the table is the difference of the two scores."""
    import numpy as np

    from dhrd.stats import resampled_scores

    for record in (r for r in records if not r.pruned):
        kept = record.dev_statistics
        statistics = {k: np.asarray(v) for k, v in kept["statistics"].items()}
        everything = np.arange(len(next(iter(statistics.values()))))[None, :]
        assert resampled_scores(kept["task"], statistics, everything)[0] == pytest.approx(record.value, abs=0.01)
    complete = [r for r in table["candidates"] if r["state"] == "complete"]
    pooled = next(r for r in complete if r["alpha"] == 0)
    assert pooled["against_pooled"] is None
    for row in complete:
        if row is not pooled:
            lead = row["against_pooled"]
            assert lead["difference"] == pytest.approx(row["dev_score"] - pooled["dev_score"], abs=0.02), row


@pytest.mark.faults
def test_a_ray_search_killed_after_a_trial_ended_keeps_it(tmp_path, tiny_backbone, superglue_dir):
    """kill -9 of the whole ``dhrd train --alpha auto --alpha-search-backend ray`` (driver and the local ray it
    started) once ray has recorded a trial as ended (40 epochs: trials long enough that one is still to run); the
    same command then finishes without training that trial again, and ships the same choice."""
    pytest.importorskip("ray", reason="the ray backend needs ray: pip install 'dhrd[ray]'")
    import time

    from faults_support import cli_env, kill_group, run, start

    output = tmp_path / "auto"
    experiment = output / "alpha-search" / "ray"
    args = ["train", "--task", "cb", "--data-dir", superglue_dir, "--backbone", tiny_backbone, "--output-dir", output,
            "--no-bf16", "--batch-size", "4", "--max-length", "128", "--lr", "1e-9", "--epochs", "40",
            "--alpha", "auto", "--alpha-candidates", "0,1", "--lm-scope-candidates", "all,reasoning",
            "--alpha-search-backend", "ray", "--rationales", _rationales(tmp_path)]  # fmt: skip
    env = cli_env(tmp_path / "dhrd-cache")

    def ended_trials() -> list[str]:
        states = sorted(experiment.glob("experiment_state-*.json"))
        if not states:
            return []
        try:
            trials = [json.loads(t[0]) for t in json.loads(states[-1].read_text())["trial_data"]]
        except (ValueError, KeyError):  # being rewritten
            return []
        return [t["trial_id"] for t in trials if t["status"] == "TERMINATED"]

    process = start(args, env, tmp_path)
    began = time.monotonic()
    while process.poll() is None and not ended_trials() and time.monotonic() - began < 900:
        time.sleep(0.5)
    assert process.poll() is None, "the search ended before it could be killed"
    kill_group(process)
    ended = ended_trials()
    assert 1 <= len(ended) < 3, ended
    results = {p: p.read_bytes() for t in ended for p in experiment.glob(f"*_{t}_*/result.json")}
    assert len(results) == len(ended)
    rerun = run(args, env, tmp_path, timeout=1800)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {p: p.read_bytes() for p in results} == results  # the ended trial did not train again
    assert len(list(experiment.glob("*/result.json"))) == 3
    table = json.loads((output / "alpha-search.json").read_text())
    assert [r["state"] for r in table["candidates"]] == ["complete"] * 3 and table["chosen"] == "pooled"


def test_one_trials_model_is_alive_at_a_time_and_memory_is_bounded_first(
    tmp_path, tiny_backbone, superglue_dir, monkeypatch
):
    """Each trial's model is let go before the next is built (nine trials of a 135M model in one process would
    otherwise hold on to more than they need), layers included; each trial's long batches are held to the
    activation budget on its own model's layers (the budget once stayed on the first model's: a trial kept every
    layer's activations, 7.4 GB on CB); and ``train(alpha="auto")`` makes the process's memory settings before the
    search, as a plain run does (the search once ran without them: 10 GB on RTE in one process)."""
    import gc
    import weakref

    from dhrd.memory import checkpointable_layers
    from dhrd.training import run, tuning

    earlier_alive, models, budgeted = [], [], []  # per trial: earlier models or layers alive; weak refs; budget's
    trial_model = tuning.AlphaSearchTrainer.trial_model

    def watched(self, trial=None):
        model = trial_model(self, trial)
        gc.collect()
        earlier_alive.append(sum(ref() is not None for pair in models for ref in pair))
        layers = checkpointable_layers(model)
        models.append((weakref.ref(model), weakref.ref(layers[0])))
        budget = self.activation_budget
        budgeted.append(budget is not None and budget.enabled and budget.layers == layers)
        return model

    monkeypatch.setattr(tuning.AlphaSearchTrainer, "trial_model", watched)
    bounded = []
    monkeypatch.setattr(run, "bound_process_memory", lambda: bounded.append(len(models)))
    args = DHRDTrainingArguments(
        output_dir=str(tmp_path / "auto"), alpha="auto", alpha_candidates="0,0.5,1", lm_scope_candidates="all",
        rationales=str(_rationales(tmp_path)), **tiny_run(tiny_backbone, superglue_dir, learning_rate=1e-9),
    )  # fmt: skip
    train(args)
    assert earlier_alive == [0, 0, 0]  # no earlier trial's model or layers alive when a trial's model was built
    assert budgeted == [True, True, True]
    assert bounded[0] == 0  # before the first trial


def test_pooled_is_never_pruned_even_when_it_runs_last(tmp_path, tiny_backbone, superglue_dir, monkeypatch):
    """A search that first ran without pooled (--alpha-candidates 0.5,1), started again with it, runs pooled last,
    after the trials that make the medians: scoring below them, it would be pruned, and the search could then ship a
    DHRD candidate that never beat pooled. Pooled runs to its end instead, and counts. (Before, optuna refused the
    new candidate with a traceback: a study keeps a parameter's choices fixed.)"""
    import dataclasses

    from dhrd.training import search_backends

    passes = _fixed_dev_scores(monkeypatch, {0.0: 40.0, 0.5: 60.0, 1.0: 55.0})
    args = _three_trial_search(tmp_path, tiny_backbone, superglue_dir)
    train(dataclasses.replace(args, alpha_candidates="0.5,1"))
    train(args)
    table = json.loads((tmp_path / "auto" / "alpha-search.json").read_text())
    assert passes[-1] == 0.0  # the premise: pooled ran last
    assert passes.count(0.0) >= search_backends.EVALUATIONS_PER_TRIAL
    states = {r["candidate"]: r["state"] for r in table["candidates"]}
    assert states["pooled"] == "complete" and len(states) == 3 and table["chosen"] == "alpha 0.5, lm-scope all"


def test_rays_median_rule_never_stops_pooled():
    """The scheduler's decision on a trial below the median: a DHRD candidate stops, pooled goes on."""
    pytest.importorskip("ray", reason="the ray backend needs ray: pip install 'dhrd[ray]'")
    from ray.tune.schedulers import MedianStoppingRule, TrialScheduler

    from dhrd.training.search_backends import _median_rule

    class Trial:  # what the rule reads of a trial
        def __init__(self, alpha):
            self.config, self.trial_id = {"candidate": {"alpha": alpha, "lm_scope": "all"}}, f"alpha-{alpha}"

    rule = _median_rule(MedianStoppingRule)(
        time_attr="training_iteration", metric="objective", mode="max", grace_period=2, min_samples_required=2
    )
    for trial in (Trial(0.5), Trial(1.0)):
        for step in (1, 2, 3):
            assert rule.on_trial_result(None, trial, {"training_iteration": step, "objective": 60.0}) == "CONTINUE"
    low_dhrd, low_pooled = Trial(0.25), Trial(0.0)
    for step in (1, 2):
        decisions = [
            rule.on_trial_result(None, t, {"training_iteration": step, "objective": 40.0})
            for t in (low_dhrd, low_pooled)
        ]
    assert decisions == [TrialScheduler.STOP, TrialScheduler.CONTINUE]
    assert rule.on_trial_result(None, low_pooled, {"training_iteration": 3, "objective": 40.0}) == "CONTINUE"


def test_a_trial_is_never_pruned_at_its_last_dev_pass(tmp_path, tiny_backbone, superglue_dir, monkeypatch):
    """Its training is done: pruning it there saves nothing and drops a finished trial from the medians (RTE, all
    rows: alpha 1 ran its four passes, 64.5 at the last against a median of 64.7, and was listed as pruned). Dev
    scores by alpha and pass: pooled 50 then 70 at its last pass, alpha 0.5 50 then 60, alpha 1 55 throughout:
    above the medians (50) until the last pass, under its median (65) there. It ends complete, as under ray."""
    from dhrd.training import tuning

    def evaluate(self, *args, **kwargs):
        last = self.state.global_step >= self.state.max_steps
        return {"eval_score": {0.0: (50.0, 70.0), 0.5: (50.0, 60.0), 1.0: (55.0, 55.0)}[self.alpha][last]}

    monkeypatch.setattr(tuning.AlphaSearchTrainer, "evaluate", evaluate)
    output = tmp_path / "auto"
    args = _three_trial_search(tmp_path, tiny_backbone, superglue_dir)
    train(args)
    table = json.loads((output / "alpha-search.json").read_text())
    rows = {r["candidate"]: r for r in table["candidates"]}
    assert {name: r["state"] for name, r in rows.items()} == dict.fromkeys(rows, "complete")
    assert rows["alpha 1, lm-scope all"]["dev_score"] == 55.0 and table["trials_pruned"] == 0
    assert table["chosen"] == "pooled"


def test_a_search_kept_in_a_journal_outlives_its_output_directory(tmp_path, tiny_backbone, superglue_dir, monkeypatch):
    """--alpha-search-storage names a journal file outside the output directory: a search killed in its second trial,
    its output directory then lost (a fresh checkout has no runs/), started again elsewhere runs only the trials that
    had not ended; the table and choice are those of the same search killed and resumed in its output directory. A
    journal left with a torn last line by a kill still reads; one holding a search with other settings is refused in
    one line; --restart empties it."""
    import dataclasses
    import shutil

    from optuna.trial import TrialState

    from dhrd.training.search_backends import optuna_storage

    passes = _fixed_dev_scores(monkeypatch, {0.0: 60.0, 0.5: 70.0, 1.0: 50.0})
    journal = tmp_path / "kept" / "search.log"
    base = _three_trial_search(tmp_path, tiny_backbone, superglue_dir)
    # the same kill, resumed in its own output directory
    in_folder = dataclasses.replace(base, output_dir=str(tmp_path / "in-folder"))
    resume = _killed_in_trial(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="killed"):
        train(in_folder)
    resume()
    train(in_folder)
    expected = json.loads((tmp_path / "in-folder" / "alpha-search.json").read_text())

    args = dataclasses.replace(base, alpha_search_storage=str(journal))
    resume = _killed_in_trial(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="killed"):
        train(args)
    shutil.rmtree(tmp_path / "auto")  # the output directory lost: only the journal is left
    with open(journal, "ab") as f:
        f.write(b'{"op_code":')  # what a kill in the middle of a write leaves
    resume()
    before = len(passes)
    train(dataclasses.replace(args, output_dir=str(tmp_path / "elsewhere")))
    assert 0.0 not in passes[before:]  # pooled had ended: kept in the journal, not trained again
    assert {0.5, 1.0} <= set(passes[before:])
    table = json.loads((tmp_path / "elsewhere" / "alpha-search.json").read_text())
    keys = ("candidate", "state", "dev_score", "dev_scores")
    assert [{k: r[k] for k in keys} for r in table["candidates"]] == [
        {k: r[k] for k in keys} for r in expected["candidates"]
    ]
    assert table["chosen"] == expected["chosen"] == "alpha 0.5, lm-scope all"
    assert not (tmp_path / "elsewhere" / "alpha-search" / "optuna.db").exists()  # the journal held the trials
    import optuna

    trials = optuna.load_study(study_name="dhrd-alpha-search", storage=optuna_storage(str(journal), tmp_path)).trials
    # the killed trial and alpha 1's, set aside unstarted to run after alpha 0.5 again; one ended trial a candidate
    assert [t.state for t in trials].count(TrialState.FAIL) == 2 and len(trials) == 5
    # another learning rate: another search, refused wherever the output directory is
    other = dataclasses.replace(args, output_dir=str(tmp_path / "third"), learning_rate=args.learning_rate * 2)
    with pytest.raises(DHRDInputError, match=r"search\.log: holds an alpha search with other settings \(learning_rate"):
        train(other)
    train(dataclasses.replace(other, resume=False))  # --restart: the journal's search deleted, a new one run
    trials = optuna.load_study(study_name="dhrd-alpha-search", storage=optuna_storage(str(journal), tmp_path)).trials
    assert len(trials) == 3


def test_the_ray_backend_refuses_an_optuna_storage(tmp_path, tiny_backbone, superglue_dir):
    import dataclasses

    args = DHRDTrainingArguments(
        output_dir=str(tmp_path / "auto"), alpha="auto", alpha_search_backend="ray",
        alpha_search_storage=str(tmp_path / "search.log"), rationales=str(_rationales(tmp_path)),
        **tiny_run(tiny_backbone, superglue_dir),
    )  # fmt: skip
    with pytest.raises(DHRDInputError, match="--alpha-search-storage is where optuna keeps the trials"):
        train(args)
    kept = tmp_path / "auto" / "alpha-search" / "ray" / "experiment_state-1.json"  # an earlier search's
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    with pytest.raises(DHRDInputError, match="--alpha-search-storage is where optuna keeps the trials"):
        train(dataclasses.replace(args, resume=False))  # refused before --restart removes anything
    assert kept.is_file()
