"""``dhrd reproduce`` and ``dhrd demo``: settings from a config file and the command line, the cells and their
resumption, and the tables, on the tiny model and tiny SuperGLUE files."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from conftest import write_jsonl
from typer.testing import CliRunner

import dhrd.training
from dhrd.cli import app
from dhrd.errors import DHRDInputError
from dhrd.experiments import (
    ReproduceArguments,
    demo_arguments,
    make_arguments,
    markdown,
    paper_gains,
    parse_caps,
    plan,
    reproduce,
    summarise,
    training_arguments,
)

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
        assert all(q["examples_per_s"] > 0 for q in tasks[task]["qps"].values())
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
        assert 0 < floor["score"] <= 100 and floor["predictor"].startswith("always") and 0 < floor["chance"] < 100
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


def test_a_rerun_runs_only_the_unfinished_cells(finished, monkeypatch, tiny_backbone, superglue_dir, rationale_dir):
    args, result = finished
    root = Path(args.output_dir)
    # as if killed before these two cells finished: their result files are missing
    (root / "copa" / "dhrd-s2" / "metrics.json").unlink()
    (root / "cb" / "cot-s2" / "cot-eval.json").unlink()
    trained = []
    real_train = dhrd.training.train
    monkeypatch.setattr(dhrd.training, "train", lambda a: trained.append(a.output_dir) or real_train(a))
    began = time.perf_counter()
    again = reproduce(args, progress=False)
    elapsed = time.perf_counter() - began
    assert trained == [str(root / "copa" / "dhrd-s2")]
    assert (root / "cb" / "cot-s2" / "cot-eval.json").is_file()
    assert again.summary["tasks"]["cb"]["methods"]["pooled"] == result.summary["tasks"]["cb"]["methods"]["pooled"]
    # the wall time adds up across sessions: the first run's, plus this one's (less its set-up, a few s)
    assert result.seconds > 2 and result.seconds + elapsed - 5 <= again.seconds <= result.seconds + elapsed + 0.2


def test_tables_only_reads_the_finished_cells_and_trains_nothing(finished, monkeypatch):
    args, result = finished
    monkeypatch.setattr(dhrd.training, "train", lambda a: pytest.fail(f"trained {a.output_dir}"))
    again = reproduce(make_arguments(None, **{**args.__dict__, "tables_only": True}), progress=False)
    assert again.summary["tasks"]["cb"]["paired"] == result.summary["tasks"]["cb"]["paired"]
    assert again.summary["tasks"]["copa"]["methods"]["dhrd"] == result.summary["tasks"]["copa"]["methods"]["dhrd"]


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
    args = demo_arguments()
    assert args.tasks == ["cb"] and args.seeds == [1] and args.train["input_format"] == "native"
    assert {"pooled", "dhrd", "cot-zero-shot"} == set(args.methods) and args.eval_cap("cb") is None
    assert args.cot_cap("cb") >= 24  # CoT scored on enough examples to say something (with its error shown)
    assert demo_arguments(tasks=["copa"], max_train_examples=10).train_cap("copa") == 10
    assert "input_format" in demo_arguments().train  # overrides never edit the shared defaults


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


def test_tasks_without_rationales_ask_the_teacher_for_the_capped_subset(
    tmp_path, monkeypatch, tiny_backbone, superglue_dir, rationale_dir
):
    import dhrd.teacher

    asked = {}

    def fake_make_rationales(task, output, max_examples, subset_seed, **kwargs):
        asked.update(task=task, max_examples=max_examples, subset_seed=subset_seed, teacher=kwargs["teacher"])
        path = write_jsonl(output / "RTE" / "train.jsonl", [{"idx": i, "rationale": f"So {i}."} for i in range(8)])
        return path, {"teacher": "fake", "rationales_in_cache": 8, "examples": 8}

    monkeypatch.setattr(dhrd.teacher, "make_rationales", fake_make_rationales)
    args = _arguments(
        tmp_path, tiny_backbone, superglue_dir, rationale_dir, tasks=["rte"], methods=["dhrd"], seeds=[1], qps=False
    )
    args.teacher = "some-teacher"
    result = reproduce(args, progress=False)
    assert asked == {"task": "rte", "max_examples": 6, "subset_seed": 0, "teacher": "some-teacher"}
    assert result.rationales["rte"]["teacher"] == "fake"
    assert result.cells["train rte dhrd s1"]["result"]["rows_without_rationale"] == 0
    assert "rationales: fake" in (tmp_path / "runs" / "results.md").read_text()


def test_a_carved_boolq_is_flagged_as_not_comparable(monkeypatch):
    import dhrd.tasks
    from dhrd.experiments import ReproduceResult

    monkeypatch.setattr(dhrd.tasks, "boolq_carved", lambda data_dir=None: True)
    args = ReproduceArguments(tasks=["boolq"], seeds=[1], methods=["pooled"])
    metrics = {"score": 60.0, "tasks": {"boolq": {"accuracy": 60.0, "examples": 1000, "score": 60.0}}}
    result = ReproduceResult(args.__dict__.copy())
    result.cells = {"train boolq pooled s1": {"kind": "train", "task": "boolq", "method": "pooled", "result": metrics}}
    result.summary = summarise(args, result)
    assert result.summary["tasks"]["boolq"]["not_comparable"] == dhrd.tasks.BOOLQ_CARVE_NOTE
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
