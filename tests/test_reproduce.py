"""``dhrd reproduce`` and ``dhrd demo``: settings from a config file and the command line, the cells and their
resumption, and the tables, on the tiny model and tiny SuperGLUE files."""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_provenance, write_jsonl
from typer.testing import CliRunner

import dhrd.training.run
from dhrd.cli.commands import app
from dhrd.errors import DHRDInputError
from dhrd.reproduction import (
    ReproduceArguments,
    demo_arguments,
    make_arguments,
    markdown,
    paper_gains,
    plan,
    reproduce,
)
from dhrd.reproduction.arguments import parse_caps
from dhrd.reproduction.cells import training_arguments
from dhrd.reproduction.report import METHOD_NAMES
from dhrd.reproduction.summary import summarise

runner = CliRunner()


def test_paper_gains_match_the_papers_table():
    gains = paper_gains()
    # Table 1's Rel.Δ column, recomputed from its per-task cells
    assert gains["Llama-3.1-8B"]["average"] == 1.43
    assert gains["Qwen-3-8B"]["average"] == 1.32
    assert gains["Llama-3.2-3B"]["average"] == 5.47
    assert gains["Qwen-3-4B"]["average"] == 0.65
    assert gains["Llama-3.2-3B"]["copa"] == round(100 * (89.2 / 72.2 - 1), 2)  # the paper's "+23.5% on COPA"
    assert gains["Llama-3.1-8B"]["cb"] == round(100 * ((89.0 + 94.8) / (81.9 + 90.0) - 1), 2)


def test_caps_are_one_number_or_per_task():
    assert parse_caps("64") == 64
    assert parse_caps("64, multirc:16") == {"default": 64, "multirc": 16}
    with pytest.raises(DHRDInputError, match="cannot read"):
        parse_caps("many")
    args = make_arguments(None, max_train_examples="64,multirc:16", tasks="cb,multirc")
    assert (args.train_cap("cb"), args.train_cap("multirc")) == (64, 16)
    assert args.cot_cap("cb") is None and make_arguments(None, max_eval_examples=50).cot_cap("cb") == 50


@pytest.mark.parametrize("suffix", ["toml", "yaml"])
def test_config_file_then_command_line(tmp_path, suffix):
    if suffix == "toml":
        text = 'tasks = ["cb", "rte"]\nseeds = [1, 2]\nepochs = 2\nmax-train-examples = {default = 32, cb = 8}\n'
        text += "[train]\nmax_length = 256\n"
    else:
        text = "tasks: [cb, rte]\nseeds: [1, 2]\nepochs: 2\nmax-train-examples: {default: 32, cb: 8}\n"
        text += "train:\n  max_length: 256\n"
    config = tmp_path / f"settings.{suffix}"
    config.write_text(text)
    args = make_arguments(config, seeds="7", learning_rate=1e-4)
    assert args.tasks == ["cb", "rte"] and args.seeds == [7] and args.epochs == 2 and args.learning_rate == 1e-4
    assert (args.train_cap("cb"), args.train_cap("rte")) == (8, 32)
    assert args.train == {"max_length": 256}


def test_config_errors_are_one_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("taks = ['cb']\n")
    with pytest.raises(DHRDInputError, match=r"bad.toml: unknown setting taks"):
        make_arguments(config)
    config.write_text("tasks = [\n")
    with pytest.raises(DHRDInputError, match="unreadable config"):
        make_arguments(config)
    with pytest.raises(DHRDInputError, match="config file not found"):
        make_arguments(tmp_path / "missing.toml")
    with pytest.raises(DHRDInputError, match="unknown method"):
        make_arguments(None, methods="pooled,magic")
    with pytest.raises(DHRDInputError, match="unknown training argument"):
        make_arguments(None, train={"lora_rank": 4})
    with pytest.raises(DHRDInputError, match="unknown task"):
        make_arguments(None, tasks="cb,record")


def test_plan_puts_each_seed_across_all_tasks_first():
    args = ReproduceArguments(tasks=["cb", "multirc"], seeds=[1, 2], methods=["pooled", "dhrd", "cot-zero-shot"])
    names = [c.name for c in plan(args)]
    assert names[:2] == ["rationales cb", "rationales multirc"]
    assert names.index("train multirc dhrd s1") < names.index("train cb pooled s2")
    assert "cot cb cot-zero-shot s1" in names and "cot cb cot-zero-shot s2" not in names
    assert not any("multirc cot-zero-shot" in n for n in names)  # MultiRC's answers are per candidate
    assert names.index("qps cb") < names.index("train cb pooled s2")


def test_every_method_has_one_row_of_rules_that_the_cells_follow(tmp_path):
    """The methods reproduce accepts, the benchmark's systems and the tables' names are the rows of one table
    (``reproduction.methods``); the plan and each training cell's arguments follow the method's row."""
    from dhrd.options.command_args import SYSTEMS
    from dhrd.reproduction import METHODS
    from dhrd.reproduction.methods import METHOD_RULES

    assert tuple(METHOD_RULES) == METHODS and set(SYSTEMS) <= set(METHODS) and set(METHOD_NAMES) == set(METHODS)
    args = make_arguments(None, tasks=["cb", "multirc"], seeds=[1, 2], methods=list(METHODS), alpha=0.5, beta=2.0)
    cells = plan(args)
    assert any(c.kind == "rationales" for c in cells)
    for name, rules in METHOD_RULES.items():
        trained = [(c.task, c.seed) for c in cells if c.kind == "train" and c.method == name]
        assert len(trained) == (4 if rules.trained else 0), name
        assert rules.scored_by == ("train" if rules.classifier else "cot") and rules.classifier != bool(rules.cot)
        decoded = {(c.task, c.seed) for c in cells if c.kind == "cot" and c.method == name}
        if rules.cot == "fine-tuned":
            assert decoded == {(t, s) for t in ("cb", "multirc") for s in (1, 2)}
        else:  # zero-shot: once, where the task has a zero-shot prompt (not MultiRC); others never
            assert decoded == ({("cb", 1)} if rules.cot else set()), name
        if not rules.trained:
            continue
        made = training_arguments(args, "cb", name, 1, str(tmp_path))
        assert made.method == rules.training_method and made.rationale_mode == rules.rationale_mode
        assert made.keep_reasoning_head == rules.keep_reasoning_head
        expected = (0.0, 2.0) if name == "pooled" else ((1.0, 0.0) if name == "cot" else (0.5, 2.0))
        assert (made.lm_weight, made.beta) == expected, name
        assert rules.needs_rationales == (made.method == "dhrd")
    pooled_only = make_arguments(None, tasks=["cb"], seeds=[1], methods=["pooled"])
    assert not any(c.kind == "rationales" for c in plan(pooled_only))
    with pytest.raises(DHRDInputError, match="unknown method nope"):
        make_arguments(None, methods=["nope"])


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def rationale_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rationales")
    write_jsonl(root / "CB" / "train.jsonl", [{"idx": i, "rationale": f"Ann said so {i}."} for i in range(12)])
    write_jsonl(root / "COPA" / "train.jsonl", [{"idx": i, "rationale": f"Taps give water {i}."} for i in range(8)])
    return root


def _arguments(tmp_path, tiny_backbone, superglue_dir, rationale_dir, **overrides) -> ReproduceArguments:
    settings = dict(
        tasks=["cb", "copa"],
        seeds=[1, 2],
        methods=["pooled", "dhrd", "cot", "cot-zero-shot"],
        backbone=str(tiny_backbone),
        data_dir=str(superglue_dir),
        rationales=str(rationale_dir),
        output_dir=str(tmp_path / "runs"),
        epochs=1,
        batch_size=4,
        max_train_examples={"default": 6, "copa": 4},
        max_eval_examples=4,
        cot_eval_examples=2,
        cot_setting="greedy",
        qps_examples=2,
        qps_repeats=1,
        train={"bf16": False, "max_length": 128},
    )
    settings.update(overrides)
    return make_arguments(None, **settings)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_backbone, superglue_dir, rationale_dir):
    tmp_path = tmp_path_factory.mktemp("reproduce")
    args = _arguments(tmp_path, tiny_backbone, superglue_dir, rationale_dir)
    return args, reproduce(args, progress=False)


def test_every_cell_runs_and_the_tables_say_what_was_measured(finished):
    args, result = finished
    assert result.finished
    tasks = result.summary["tasks"]
    for task in ("cb", "copa"):
        methods = tasks[task]["methods"]
        assert set(methods) == {"pooled", "dhrd", "cot", "cot-zero-shot"}
        for method in ("pooled", "dhrd", "cot"):
            assert methods[method]["score"]["n"] == 2 and methods[method]["score"]["std"] is not None
        assert methods["cot-zero-shot"]["score"]["n"] == 1
        assert methods["pooled"]["eval_examples"] == 4 and methods["cot"]["eval_examples"] == 2
        assert set(tasks[task]["qps"]) == {"pooled", "dhrd", "cot", "cot-zero-shot"}
        # each method's examples/s is its benchmark row's: its examples over its fastest pass
        bench = json.loads((Path(args.output_dir) / task / "benchmark.json").read_text())
        assert {row["system"] for row in bench["rows"]} == set(tasks[task]["qps"])  # one name per system
        for row in bench["rows"]:
            qps = tasks[task]["qps"][row["system"]]
            assert qps["examples"] == 2 and qps["examples_per_s"] == row["examples_per_s"]
            assert qps["examples_per_s"] == pytest.approx(2 / row["seconds_min"], rel=1e-2)
        assert tasks[task]["paper_relative_gain_percent"]["Llama-3.1-8B"] == paper_gains()["Llama-3.1-8B"][task]
        pooled, dhrd = methods["pooled"]["score"]["mean"], methods["dhrd"]["score"]["mean"]
        if pooled:
            assert tasks[task]["relative_gain_percent"] == round(100 * (dhrd / pooled - 1), 2)
    assert tasks["copa"]["caps"]["max_train_examples"] == 4 and tasks["cb"]["caps"]["max_train_examples"] == 6
    assert methods["pooled"]["train_rows"] == 8  # 4 COPA examples, one row per choice

    out = args.output_dir
    table = Path(out) / "results.md"
    text = table.read_text()
    assert "| Pooled baseline |" in text and "| DHRD |" in text and "paper Llama-3.1-8B" in text
    assert "(on 2, ±" in text.split("| CoT fine-tuned")[1].splitlines()[0]  # CoT scored on fewer examples: said
    # every task's majority floor and chance beside its scores, and the paired difference with its interval
    assert "| *Majority floor (best constant)* |" in text and "| *Chance (uniform guess)* |" in text
    assert "## Paired with pooled" in text and "95% CI" in text
    for task in ("cb", "copa"):
        floor = tasks[task]["floor"]
        expected = independent_floor(task, args.data_dir, Path(args.output_dir) / task / "pooled-s1")
        assert floor["score"] == pytest.approx(expected["score"], abs=1e-3) and floor["predictor"] in expected["best"]
        assert floor["chance"] == pytest.approx(expected["chance"], abs=6)  # two seeded Monte Carlo means
        paired = tasks[task]["paired"]["dhrd"]
        assert paired["seeds"] == 2 and paired["examples"] == 4 and len(paired["per_seed"]) == 2
        assert paired["ci"][0] <= paired["difference"] <= paired["ci"][1]
        per_seed = [
            methods_["dhrd"]["score"]["values"][i] - methods_["pooled"]["score"]["values"][i]
            for methods_ in [tasks[task]["methods"]]
            for i in range(2)
        ]
        assert paired["per_seed"] == pytest.approx(per_seed, abs=0.02)  # the official scores, paired by seed
    assert "max train examples 4" in text and "max eval examples 4" in text and "cot eval examples 2" in text
    assert "Throughput" in text and "Wall time" in text and "torch" in text and "unparseable rows" in text
    assert "DHRD / CoT fine-tuned" in text and "CoT decoding: cb: greedy, max_new_tokens=" in text
    rows = list(csv.DictReader((table.with_suffix(".csv")).open()))
    assert {(r["task"], r["method"]) for r in rows} >= {("cb", "pooled"), ("copa", "dhrd"), ("cb", "cot")}
    saved = json.loads((table.with_suffix(".json")).read_text())
    assert saved["finished"] and saved["summary"]["average"]["tasks"] == ["cb", "copa"]
    assert table.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def independent_floor(task: str, data_dir, run: Path) -> dict:
    """The best constant predictor's score on the examples a run was scored on (its saved ids), with sklearn from
    the raw jsonl labels, and the chance score as a Monte Carlo mean of uniformly random choices."""
    from sklearn.metrics import f1_score

    ids = json.loads((run / "validation-predictions.json").read_text())["ids"]
    records = {r["idx"]: r for r in map(json.loads, (Path(data_dir) / task.upper() / "val.jsonl").open())}
    examples = list(dict.fromkeys(int(i.split("-")[1].split("#")[0]) for i in ids))
    if task == "cb":
        names = ["entailment", "contradiction", "neutral"]
        gold = [records[i]["label"] for i in examples]

        def score(said):
            f1 = f1_score(gold, said, labels=names, average="macro", zero_division=0)
            return (100 * np.mean([s == g for s, g in zip(said, gold)]) + 100 * f1) / 2
    else:
        names = ["choice1", "choice2"]
        gold = [f"choice{records[i]['label'] + 1}" for i in examples]

        def score(said):
            return 100 * np.mean([s == g for s, g in zip(said, gold)])

    constants = {f"always {name}": score([name] * len(gold)) for name in names}
    top = max(constants.values())
    rng = np.random.default_rng(123)
    chance = np.mean([score(list(rng.choice(names, len(gold)))) for _ in range(4000)])
    return {"score": top, "best": [k for k, v in constants.items() if v == top], "chance": chance}


def test_a_rerun_runs_only_the_unfinished_cells(finished, monkeypatch, tiny_backbone, superglue_dir, rationale_dir):
    args, result = finished
    root = Path(args.output_dir)
    # as if killed before these two cells finished: their result files are missing
    (root / "copa" / "dhrd-s2" / "metrics.json").unlink()
    (root / "cb" / "cot-s2" / "cot-eval.json").unlink()
    began = time.perf_counter()  # the wall time below counts both passes
    # rewriting the tables of a plan with unfinished cells does not call the run finished
    assert not reproduce(dataclasses.replace(args, tables_only=True), progress=False).finished
    trained = []
    real_train = dhrd.training.run.train
    monkeypatch.setattr(dhrd.training.run, "train", lambda a: trained.append(a.output_dir) or real_train(a))
    again = reproduce(args, progress=False)
    elapsed = time.perf_counter() - began
    assert trained == [str(root / "copa" / "dhrd-s2")]
    assert (root / "cb" / "cot-s2" / "cot-eval.json").is_file()
    assert again.summary["tasks"]["cb"]["methods"]["pooled"] == result.summary["tasks"]["cb"]["methods"]["pooled"]
    # the wall time adds up across sessions: the first run's, plus this one's (less its set-up, which takes
    # anything from a few seconds to a minute on a loaded machine: only the bounds are asserted)
    assert result.seconds > 2 and result.seconds < again.seconds <= result.seconds + elapsed + 0.2
    # a cell finished by the first run keeps the time it took then, not the moment the rerun took to read it
    kept = result.cells["train cb pooled s1"]["cell_seconds"]
    assert kept > 0 and again.cells["train cb pooled s1"]["cell_seconds"] == kept


def test_tables_only_reads_the_finished_cells_and_trains_nothing(finished, monkeypatch):
    args, result = finished
    monkeypatch.setattr(dhrd.training.run, "train", lambda a: pytest.fail(f"trained {a.output_dir}"))
    again = reproduce(make_arguments(None, **{**args.__dict__, "tables_only": True}), progress=False)
    assert again.summary["tasks"]["cb"]["paired"] == result.summary["tasks"]["cb"]["paired"]
    assert again.summary["tasks"]["copa"]["methods"]["dhrd"] == result.summary["tasks"]["copa"]["methods"]["dhrd"]


def test_each_method_trains_with_its_own_loss(finished, tmp_path):
    """pooled: alpha 0 and no rationales; dhrd: the configured alpha and beta; cot: the reasoning head alone
    (alpha 1, beta 0), kept for decoding; as the finished cells' saved training arguments say, and for any
    configured alpha and beta."""
    args, _ = finished
    expected = {
        "pooled": {"method": "pooled", "alpha": None, "beta": 1.0, "rationales": None, "keep_reasoning_head": False},
        "dhrd": {"method": "dhrd", "alpha": 1.0, "beta": 1.0, "keep_reasoning_head": False},
        "cot": {"method": "dhrd", "alpha": 1.0, "beta": 0.0, "keep_reasoning_head": True},
    }
    for task in ("cb", "copa"):
        for method, settings in expected.items():
            for seed in (1, 2):
                saved = json.loads((Path(args.output_dir) / task / f"{method}-s{seed}" / "train_args.json").read_text())
                assert {k: saved[k] for k in settings} == settings, (task, method, seed)
                assert saved["seed"] == seed and saved["subset_seed"] == 0 and saved["rationale_mode"] == "consistent"
                assert (saved["rationales"] is None) == (method == "pooled")
        assert (Path(args.output_dir) / task / "cot-s1" / "model" / "reasoning_head.safetensors").is_file()
    other = make_arguments(None, tasks=["cb"], alpha=0.5, beta=2.0)
    made = {m: training_arguments(other, "cb", m, 1, str(tmp_path)) for m in ("pooled", "dhrd", "cot")}
    assert (made["pooled"].lm_weight, made["pooled"].beta) == (0.0, 2.0)
    assert (made["dhrd"].lm_weight, made["dhrd"].beta) == (0.5, 2.0)
    assert (made["cot"].lm_weight, made["cot"].beta, made["cot"].keep_reasoning_head) == (1.0, 0.0, True)


def test_summary_statistics_against_numpy(tmp_path, superglue_dir):
    """Per task and method: the mean and sample std (ddof 1) of the seeds' scores, each metric's mean, CoT's scores
    from its decodes (not its classifier's), unparsed rows summed; per method the average over tasks; DHRD's
    relative gain; all recomputed with numpy from made-up cells."""
    from dataclasses import asdict

    from dhrd.data.tasks import TASKS
    from dhrd.reproduction import ReproduceResult
    from dhrd.reproduction.report import _caps_lines

    tasks, methods, seeds = ["cb", "copa"], ["pooled", "dhrd", "cot"], [1, 2, 3]
    args = make_arguments(
        None, tasks=tasks, methods=methods, seeds=seeds, data_dir=str(superglue_dir), output_dir=str(tmp_path)
    )
    rng = np.random.default_rng(7)
    result, made = ReproduceResult(asdict(args)), {}

    def metrics(task):
        if task == "cb":
            f1, accuracy = (float(x) for x in rng.uniform(20, 95, 2).round(4))
            return {"f1": f1, "accuracy": accuracy, "score": round((f1 + accuracy) / 2, 4), "examples": 4}
        accuracy = round(float(rng.uniform(20, 95)), 4)
        return {"accuracy": accuracy, "score": accuracy, "examples": 4}

    for seed in seeds:
        for task in tasks:
            for method in methods:
                scored = metrics(task)
                cell = {"score": scored["score"], "tasks": {task: scored}, "train_rows": 12}
                result.cells[f"train {task} {method} s{seed}"] = {
                    "kind": "train", "task": task, "method": method, "seed": seed, "result": cell
                }  # fmt: skip
                if method == "cot":  # the CoT score is its decode's; its classifier's is another number
                    scored = metrics(task)
                    cell = {"score": scored["score"], "tasks": {task: scored}}
                    cell.update(
                        unparsed_rows=seed, ambiguous_examples=1, parsed_examples=4 - seed, likelihood_examples=seed
                    )
                    result.cells[f"cot {task} cot s{seed}"] = {
                        "kind": "cot", "task": task, "method": "cot", "seed": seed, "result": cell
                    }  # fmt: skip
                made.setdefault((task, method), []).append(scored)
    summary = summarise(args, result)
    means = {}
    for (task, method), runs in made.items():
        entry = summary["tasks"][task]["methods"][method]
        scores = [r["score"] for r in runs]
        means[task, method] = np.mean(scores)
        assert entry["score"]["values"] == scores and entry["score"]["n"] == 3
        assert entry["score"]["mean"] == pytest.approx(np.mean(scores), abs=0.005)
        assert entry["score"]["std"] == pytest.approx(np.std(scores, ddof=1), abs=0.005)
        names = ("f1", "accuracy") if task == "cb" else ("accuracy",)
        assert entry["metrics"] == pytest.approx({k: np.mean([r[k] for r in runs]) for k in names}, abs=0.005)
        if method == "cot":
            assert entry["unparsed_rows"] == 1 + 2 + 3 and entry["ambiguous_examples"] == 3
            assert (entry["parsed_examples"], entry["likelihood_examples"]) == (3 + 2 + 1, 1 + 2 + 3)
            result.summary = summary
            line = next(x for x in _caps_lines(result) if f"**{TASKS[task].folder}**" in x)
            assert "cot answers (all seeds): parsed 6, by likelihood 6 (6 unparseable rows, 3 examples" in line
    for task in tasks:
        gain = summary["tasks"][task]["relative_gain_percent"]
        assert gain == pytest.approx(100 * (means[task, "dhrd"] / means[task, "pooled"] - 1), abs=0.02)
    average = summary["average"]
    for method in methods:
        assert average["methods"][method] == {
            "mean": pytest.approx(np.mean([means[t, method] for t in tasks]), abs=0.01),
            "tasks": 2,
        }
    pooled, dhrd = (np.mean([means[t, m] for t in tasks]) for m in ("pooled", "dhrd"))
    assert average["tasks"] == tasks
    assert average["relative_gain_percent"] == pytest.approx(100 * (dhrd / pooled - 1), abs=0.02)


def test_the_shuffle_ablation_is_a_method(tmp_path):
    args = make_arguments(None, tasks=["cb"], seeds=[1, 2], methods=["pooled", "dhrd", "dhrd-shuffled"])
    cells = [c.name for c in plan(args)]
    assert "train cb dhrd-shuffled s1" in cells and "train cb dhrd-shuffled s2" in cells
    shuffled = training_arguments(args, "cb", "dhrd-shuffled", 1, str(tmp_path))
    assert shuffled.method == "dhrd" and shuffled.rationale_mode == "shuffle_reasoning"
    assert training_arguments(args, "cb", "dhrd", 1, str(tmp_path)).rationale_mode == "consistent"


def test_a_table_of_unfinished_seeds_says_so(finished):
    args, result = finished
    partial = dict(result.cells)
    partial.pop("train copa dhrd s2")
    cut = type(result)(**{**result.__dict__, "cells": partial})
    cut.summary = summarise(args, cut)
    row = markdown(cut).split("| DHRD |")[1].splitlines()[0]
    assert row.count("[1/2 seeds]") == 1


def test_a_finished_cell_with_other_settings_is_refused(finished, tiny_backbone, superglue_dir, rationale_dir):
    args, _ = finished
    other = make_arguments(None, **{**args.__dict__, "epochs": 2.0, "tasks": ["cb"], "methods": ["pooled"]})
    with pytest.raises(DHRDInputError, match=r"other settings \(num_train_epochs\)"):
        reproduce(other, progress=False)


def test_a_task_without_rationales_needs_a_teacher(tmp_path, tiny_backbone, superglue_dir, rationale_dir):
    args = _arguments(tmp_path, tiny_backbone, superglue_dir, rationale_dir, tasks=["rte"], methods=["dhrd"])
    with pytest.raises(DHRDInputError, match="no rationales for rte .* give a teacher"):
        reproduce(args, progress=False)


def test_demo_defaults_are_small_and_can_be_overridden():
    args = demo_arguments(tasks=["cb"])
    assert args.tasks == ["cb"] and args.seeds == [1] and args.train["head"] == "linear"
    assert {"pooled", "dhrd", "cot-zero-shot"} == set(args.methods) and args.eval_cap("cb") is None
    assert args.cot_cap("cb") >= 24  # CoT scored on enough examples to say something (with its error shown)
    assert args.train_cap("cb") == 1000 and (args.epochs, args.learning_rate) == (1.0, 1e-3)
    assert demo_arguments(tasks=["copa"], max_train_examples=10).train_cap("copa") == 10
    assert "head" in demo_arguments(tasks=["cb"]).train  # overrides never edit the shared defaults


def test_cli_reproduce_with_a_config(tmp_path, tiny_backbone, superglue_dir, rationale_dir):
    config = tmp_path / "cpu.toml"
    config.write_text(
        f'tasks = "cb"\nseeds = [1]\nmethods = ["pooled", "dhrd"]\nbackbone = "{tiny_backbone}"\n'
        f'data_dir = "{superglue_dir}"\nrationales = "{rationale_dir}"\nepochs = 1\nbatch_size = 4\n'
        "max_eval_examples = 3\nqps = false\n[train]\nbf16 = false\nmax_length = 128\n"
    )
    result = runner.invoke(
        app, ["reproduce", "--config", str(config), "--output-dir", str(tmp_path / "r"), "--max-train-examples", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "| Pooled baseline |" in result.output and "max train examples 5" in result.output
    assert (tmp_path / "r" / "results.md").is_file()
    bad = runner.invoke(app, ["reproduce", "--config", str(tmp_path / "none.toml")])
    assert bad.exit_code == 2 and "config file not found" in bad.output


def test_cli_results_dir_and_restart(tmp_path, tiny_backbone, superglue_dir, rationale_dir, monkeypatch):
    """--results-dir takes the tables away from the runs; a rerun trains nothing and adds up the wall time;
    --restart trains every cell again and counts its time afresh."""
    config = tmp_path / "cpu.toml"
    config.write_text(
        f'tasks = "cb"\nseeds = [1]\nmethods = ["pooled"]\nbackbone = "{tiny_backbone}"\n'
        f'data_dir = "{superglue_dir}"\nepochs = 1\nbatch_size = 4\nmax_train_examples = 4\n'
        "max_eval_examples = 3\nqps = false\n[train]\nbf16 = false\nmax_length = 128\n"
    )
    runs, tables = tmp_path / "runs", tmp_path / "tables"
    trained = []
    real_train = dhrd.training.run.train
    monkeypatch.setattr(dhrd.training.run, "train", lambda a: trained.append(a.resume) or real_train(a))

    def reproduce_cli(*extra):
        began = time.perf_counter()
        command = ["reproduce", "--config", str(config), "--output-dir", str(runs), "--results-dir", str(tables)]
        result = runner.invoke(app, [*command, *extra], env={"COLUMNS": "1000"})
        assert result.exit_code == 0, result.output
        return result.output, json.loads((tables / "results.json").read_text()), time.perf_counter() - began

    output, first, _ = reproduce_cli()
    assert trained == [True] and f"written: {tables}/results.md" in output
    assert {p.name for p in tables.iterdir()} >= {"results.md", "results.json", "results.csv", "results.png"}
    assert not list(runs.glob("results.*")) and (runs / "cb" / "pooled-s1" / "metrics.json").is_file()
    metrics = runs / "cb" / "pooled-s1" / "metrics.json"
    made = metrics.stat().st_mtime_ns
    _, again, elapsed = reproduce_cli()
    assert trained == [True] and metrics.stat().st_mtime_ns == made  # finished: read back, not trained
    assert first["seconds"] <= again["seconds"] <= first["seconds"] + elapsed + 0.2
    assert again["summary"]["tasks"]["cb"]["methods"] == first["summary"]["tasks"]["cb"]["methods"]
    output, restarted, elapsed = reproduce_cli("--restart")
    assert trained == [True, False] and metrics.stat().st_mtime_ns != made  # trained again, from scratch
    assert "train cb pooled s1: done in" in output and "pooled s1 (already done)" not in output
    assert restarted["seconds"] <= elapsed + 0.2 and restarted["arguments"]["restart"] is True
    assert restarted["summary"]["tasks"]["cb"]["methods"]["pooled"]["score"]["n"] == 1


def test_cli_demo_on_a_tiny_model(tmp_path, tiny_backbone, superglue_dir, rationale_dir, monkeypatch):
    """``dhrd demo --task cb`` with the demo's settings (one seed, one epoch, the best epoch not chosen, the linear
    head, pooled vs DHRD vs zero-shot CoT, throughput), on the tiny model and tiny CB files."""
    from dhrd.reproduction import demo

    monkeypatch.setitem(demo.DEMO, "data_dir", str(superglue_dir))  # the shared data otherwise
    monkeypatch.setitem(demo.DEMO, "rationales", str(rationale_dir))
    out = tmp_path / "demo"
    result = runner.invoke(
        app,
        [
            "demo",
            "--task",
            "cb",
            "--backbone",
            str(tiny_backbone),
            "--output-dir",
            str(out),
            "--max-train-examples",
            "6",
        ],
        env={"COLUMNS": "1000"},
    )
    assert result.exit_code == 0, result.output
    assert f"written: {out}/results.md" in result.output
    # a line per cell, with what it is, and Trainer's logs as lines, not dicts
    assert "[2/5] train cb pooled s1" in result.output and "[5/5] qps cb: done in " in result.output
    assert "{'loss'" not in result.output and "{'eval_" not in result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["finished"] and saved["arguments"]["title"] == "dhrd demo"
    assert_provenance(saved["provenance"])
    assert_provenance(json.loads((out / "cb" / "qps.json").read_text())["provenance"])
    assert set(saved["cells"]) == {"train cb pooled s1", "train cb dhrd s1", "cot cb cot-zero-shot s1", "qps cb"}
    for method in ("pooled", "dhrd"):
        run = out / "cb" / f"{method}-s1"
        train_args = json.loads((run / "train_args.json").read_text())
        assert train_args["input_format"] == "native" and train_args["best_epoch"] is False
        assert train_args["head"] == "linear"
        assert (train_args["num_train_epochs"], train_args["learning_rate"]) == (1.0, 1e-3)
        assert train_args["method"] == method and train_args["max_train_examples"] == 6
        assert (train_args["rationales"] == str(rationale_dir)) == (method == "dhrd")
        config = json.loads((run / "model" / "config.json").read_text())
        assert set(config["id2label"].values()) == {"entailment", "contradiction", "neutral"}  # 3-way, native
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["train_rows"] == 6 and metrics["tasks"]["cb"]["examples"] == 6  # whole validation split
        assert_provenance(metrics["provenance"])
        # the printed table shows this run's score
        row = next(x for x in result.output.splitlines() if x.startswith(f"| {METHOD_NAMES[method]} |"))
        assert row.split("|")[2].strip() == f"{metrics['tasks']['cb']['score']:.1f}"
    cot = json.loads((out / "cb" / "cot-zero-shot-s1" / "cot-eval.json").read_text())
    assert cot["eval_examples"] == 6 and cot["setting"].startswith("greedy, max_new_tokens=")
    assert "| CoT zero-shot |" in result.output and "Throughput" in result.output
    qps = saved["summary"]["tasks"]["cb"]["qps"]
    assert set(qps) == {"pooled", "dhrd", "cot-zero-shot"} and all(q["examples"] == 6 for q in qps.values())


def test_tasks_without_rationales_ask_the_teacher_for_the_capped_subset(
    tmp_path, monkeypatch, tiny_backbone, superglue_dir, rationale_dir
):
    import dhrd.teacher.teachers

    asked = {}

    def fake_make_rationales(task, output, max_examples, subset_seed, **kwargs):
        asked.update(task=task, max_examples=max_examples, subset_seed=subset_seed, teacher=kwargs["teacher"])
        path = write_jsonl(output / "RTE" / "train.jsonl", [{"idx": i, "rationale": f"So {i}."} for i in range(8)])
        return path, {"teacher": "fake", "rationales_in_cache": 8, "examples": 8}

    monkeypatch.setattr(dhrd.teacher.teachers, "make_rationales", fake_make_rationales)
    args = _arguments(
        tmp_path, tiny_backbone, superglue_dir, rationale_dir, tasks=["rte"], methods=["dhrd"], seeds=[1], qps=False
    )
    args.teacher = "some-teacher"
    result = reproduce(args, progress=False)
    assert asked == {"task": "rte", "max_examples": 6, "subset_seed": 0, "teacher": "some-teacher"}
    assert result.rationales["rte"]["teacher"] == "fake"
    assert result.cells["train rte dhrd s1"]["result"]["rows_without_rationale"] == 0
    assert "rationales: fake" in (tmp_path / "runs" / "results.md").read_text()


def test_a_carved_boolq_is_flagged_as_not_comparable(monkeypatch, tmp_path):
    import dhrd.data.boolq
    from dhrd.reproduction import ReproduceResult

    monkeypatch.setattr(dhrd.data.boolq, "boolq_carved", lambda data_dir=None: True)
    # the table's floor reads the validation split: a tiny one here, so the test needs neither ../shared nor the hub
    rows = [{"question": "is it", "passage": f"T{i} -- p", "label": bool(i % 2), "idx": i} for i in range(4)]
    write_jsonl(tmp_path / "BoolQ" / "val.jsonl", rows)
    args = ReproduceArguments(tasks=["boolq"], seeds=[1], methods=["pooled"], data_dir=str(tmp_path))
    metrics = {"score": 60.0, "tasks": {"boolq": {"accuracy": 60.0, "examples": 1000, "score": 60.0}}}
    result = ReproduceResult(args.__dict__.copy())
    result.cells = {"train boolq pooled s1": {"kind": "train", "task": "boolq", "method": "pooled", "result": metrics}}
    result.summary = summarise(args, result)
    assert result.summary["tasks"]["boolq"]["not_comparable"] == dhrd.data.boolq.BOOLQ_CARVE_NOTE
    assert "Not comparable to the paper" in markdown(result)


def test_kill_9_mid_table_then_the_same_command_finishes_it(tmp_path, tiny_backbone, superglue_dir, rationale_dir):
    """``dhrd reproduce`` killed with SIGKILL once its first cell is done: the same command keeps that cell,
    runs the rest, and ends with the scores of a run that was never killed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "tiny.toml"
    config.write_text(
        f'tasks = "cb"\nseeds = [1, 2]\nmethods = ["pooled", "dhrd"]\nbackbone = "{tiny_backbone}"\n'
        f'data_dir = "{superglue_dir}"\nrationales = "{rationale_dir}"\nepochs = 1\nbatch_size = 4\n'
        "max_eval_examples = 3\nqps = false\n[train]\nbf16 = false\nmax_length = 128\nsave_steps = 1\n"
    )

    def command(out):
        return [sys.executable, "-m", "dhrd", "reproduce", "--config", str(config), "--output-dir", str(out)]

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "cb" / "pooled-s1" / "metrics.json"
    deadline = time.time() + 300
    while time.time() < deadline and not first.exists():
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first.exists() and not (killed / "cb" / "dhrd-s2" / "metrics.json").exists(), "killed too late"
    made = first.stat().st_mtime_ns

    resumed = subprocess.run(command(killed), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert first.stat().st_mtime_ns == made  # the finished cell was kept, not trained again
    unbroken = subprocess.run(command(tmp_path / "unbroken"), env=env, capture_output=True, text=True, timeout=600)
    assert unbroken.returncode == 0, unbroken.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("killed", "unbroken"))
    assert a["finished"] and set(a["cells"]) == set(b["cells"])
    assert a["summary"]["tasks"] == b["summary"]["tasks"]


def test_other_training_settings_are_written_as_the_flags_that_give_them():
    """results.md names the settings beyond the table's columns as `dhrd train` flags, which parse back to them."""
    import shlex

    from dhrd.reproduction.report import settings_flags
    from dhrd.training.argparser import parse_train_arguments

    settings = {"input_format": "native", "best_epoch": False, "max_length": 768, "truncation": "left", "lora": True}
    text = settings_flags(settings)
    assert text == "`--input-format native --no-best-epoch --max-length 768 --truncation left --lora`"
    parsed = parse_train_arguments([*shlex.split(text.strip("`")), "--output-dir", "x"])
    assert {name: getattr(parsed, name) for name in settings} == settings
