"""``dhrd reproduce`` (and ``dhrd demo``) over your own data: a ``--tasks`` entry that is an own-data config is a
task named by the file's stem, trained with its files and columns, its rationales from its rationale column, and
scored on its test file; on the tiny model and tiny files."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

import dhrd.benchmarks.timing
import dhrd.training.run
from dhrd.cli.commands import app
from dhrd.errors import DHRDInputError
from dhrd.reproduction import DemoArguments, make_arguments, plan, reproduce
from dhrd.reproduction.demo import COMVE_SETTINGS
from dhrd.reproduction.own_data import resolve_tasks

runner = CliRunner()
STATEMENTS = ["he drank milk", "he drank a car", "she ate bread", "she ate a cloud", "I read a book", "I read a sofa"]


def comparisons(n: int, start: int = 0) -> list[dict]:
    """ComVE's shape: two statements, which one is against common sense, and a human explanation."""
    rows = []
    for k in range(start, start + n):
        sensible, odd = STATEMENTS[2 * (k % 3)], STATEMENTS[2 * (k % 3) + 1]
        first = k % 2 == 0  # the odd statement comes first in even rows
        rows.append(
            {
                "id": f"c{k}",
                "statement_1": odd if first else sensible,
                "statement_2": sensible if first else odd,
                "label": "first" if first else "second",
                "explanation": f"nobody can do that: {odd} ({k})",
            }
        )
    return rows


def own_data_config(root: Path, name: str = "mine", **changes) -> Path:
    """An own-data config as examples/own-data/comve.yaml writes one, with train, validation and test files."""
    settings = {
        "train_file": str(write_jsonl(root / "data" / "train.jsonl", comparisons(12))),
        "validation_file": str(write_jsonl(root / "data" / "validation.jsonl", comparisons(6, 100))),
        "test_file": str(write_jsonl(root / "data" / "test.jsonl", comparisons(8, 200))),
        **COMVE_SETTINGS,  # ComVE's columns and instruction (held to examples/own-data/comve.yaml by a test below)
        **changes,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in settings.items() if v is not None}))
    return path


def _arguments(tmp_path: Path, config: Path, tiny_backbone, **overrides):
    settings = dict(
        tasks=[str(config)],
        seeds=[1, 2],
        methods=["pooled", "dhrd", "cot", "cot-zero-shot"],
        backbone=str(tiny_backbone),
        output_dir=str(tmp_path / "runs"),
        epochs=1,
        batch_size=4,
        max_train_examples=8,
        max_eval_examples=6,
        qps_examples=2,
        qps_repeats=1,
        train={"bf16": False, "max_length": 64},
    )
    settings.update(overrides)
    return make_arguments(None, **settings)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_backbone):
    tmp_path = tmp_path_factory.mktemp("reproduce-own-data")
    # greedy CoT: its budget fitted to the rationale column's explanations, as the demo decodes
    args = _arguments(tmp_path, own_data_config(tmp_path), tiny_backbone, cot_setting="greedy", cot_eval_examples=4)
    return args, reproduce(args, progress=False)


def test_an_own_data_task_trains_pooled_and_dhrd_and_is_scored_on_its_test_file(finished):
    args, result = finished
    assert result.finished and args.tasks == ["mine"]
    entry = result.summary["tasks"]["mine"]
    assert set(entry["methods"]) == {"pooled", "dhrd", "cot-zero-shot"}
    # CoT fine-tuned has no cells for own data, and the tables say why; zero-shot CoT decodes once per task
    assert set(entry["skipped"]) == {"cot"}
    assert [c.name for c in plan(args) if c.kind == "cot"] == ["cot mine cot-zero-shot s1"]
    test_file = yaml.safe_load(Path(args.own_data["mine"]).read_text())["test_file"]
    labels = {row["id"]: row["label"] for row in map(json.loads, Path(test_file).open())}
    for method in ("pooled", "dhrd"):
        for seed in (1, 2):
            run = Path(args.output_dir) / "mine" / f"{method}-s{seed}"
            scored = json.loads((run / "test-predictions.json").read_text())["ids"]
            assert len(scored) == 6 and set(scored) <= set(labels)  # the test file's rows, capped to 6
            train_args = json.loads((run / "train_args.json").read_text())
            assert train_args["test_file"] == test_file and train_args["rationale_column"] == "explanation"
            assert train_args["max_train_examples"] == 8
            # scored on the test file alone: the validation file is neither read nor scored (--skip-validation)
            assert train_args["score_validation"] is False and not (run / "validation-predictions.json").exists()
        assert entry["methods"][method]["eval_examples"] == 6 and entry["methods"][method]["score"]["n"] == 2
    # the scored split is the test file's, everywhere: the split, the floor and the paired comparison
    assert entry["split"] == "test" and "test file" in entry["split_source"]
    counts = Counter(labels[i] for i in scored)
    assert entry["floor"]["score"] == pytest.approx(100 * max(counts.values()) / 6, abs=1e-3)
    paired = entry["paired"]["dhrd"]
    assert paired["examples"] == 6 and paired["seeds"] == 2 and paired["ci"][0] <= paired["difference"]
    dhrd_rows = entry["methods"]["dhrd"]
    assert dhrd_rows["train_rows"] == 8 and dhrd_rows["rows_without_rationale"] == 0  # its human explanations
    assert set(entry["qps"]) == {"pooled", "dhrd", "cot-zero-shot"}  # zero-shot CoT timed beside the classifiers
    assert all(q["examples"] == 2 and q["examples_per_s"] > 0 for q in entry["qps"].values())
    assert result.summary["average"]["methods"] == {}  # the SuperGLUE average has no own-data task in it

    text = (Path(args.output_dir) / "results.md").read_text()
    assert text.startswith("# dhrd reproduce: pooled vs DHRD vs CoT on own data\n") and "| mine (test) |" in text
    assert "| CoT zero-shot |" in text and "paper Llama" not in text  # no SuperGLUE paper table
    assert "| mine | test | DHRD |" in text  # the paired table, with the task's split
    assert "| *Majority floor (best constant)* |" in text and "scored on test file" in text
    assert "cot-zero-shot skipped" not in text and "cot skipped (CoT decoding reads SuperGLUE splits only" in text
    rows = (Path(args.output_dir) / "results.csv").read_text().splitlines()
    assert rows[0].split(",")[2] == "split" and all(",test," in row for row in rows[1:])


def test_zero_shot_cot_answers_the_first_scored_test_examples_of_an_own_data_task(finished):
    args, result = finished
    cot = result.summary["tasks"]["mine"]["methods"]["cot-zero-shot"]
    assert cot["eval_examples"] == 4 and cot["score"]["n"] == 1  # one cell: greedy does not depend on the seed
    cell = json.loads((Path(args.output_dir) / "mine" / "cot-zero-shot-s1" / "cot-eval.json").read_text())
    # every example answers: parsed from its text, else by the likelihood of a label name after "Answer:"
    assert cell["parsed_examples"] + cell["likelihood_examples"] == 4 and cell["eval_examples"] == 4
    assert cell["setting"].startswith("greedy, max_new_tokens=") and 0 <= cell["score"] <= 100
    assert set(cell["tasks"]["mine"]) >= {"accuracy", "macro_f1", "score"}  # the own-data task's metrics
    assert cell["tasks"]["mine"]["score"] == cell["tasks"]["mine"]["accuracy"]
    text = (Path(args.output_dir) / "results.md").read_text()
    answered = f"parsed {cell['parsed_examples']}, by likelihood {cell['likelihood_examples']}"
    assert f"cot-zero-shot answers (all seeds): {answered}" in text and "cot eval examples 4" in text


def test_own_data_cot_prompts_are_the_teachers_view_answered_with_the_label_names(tmp_path, tiny_backbone):
    from dhrd.reproduction.own_data import own_task

    config = own_data_config(tmp_path)
    args = make_arguments(
        None, tasks=[str(config)], max_eval_examples=6, cot_eval_examples=3, output_dir=str(tmp_path / "r")
    )
    own = own_task(args, "mine")
    scored = own.scored_examples(args)
    inputs = own.cot_inputs(args, str(tiny_backbone))
    test_file = yaml.safe_load(config.read_text())["test_file"]
    rows = {row["id"]: row for row in map(json.loads, Path(test_file).open())}
    assert inputs.groups == [e.group for e in scored[:3]]  # the classifiers' first scored examples, in order
    assert inputs.gold == {g: rows[g]["label"] for g in inputs.groups}
    for query in inputs.queries:
        row = rows[query.group]
        system, user = (m["content"] for m in query.messages)
        assert "first / second" in system and user.endswith("\nPossible answers: first / second")
        assert f"Statement 1: {row['statement_1']}\nStatement 2: {row['statement_2']}" in user
        assert "Question: Which statement is against common sense, the first or the second?" in user
        assert query.answers == {"first": "first", "second": "second"} and query.cue == "\nAnswer: "


def test_own_data_cot_on_a_carved_validation_split_reads_the_rows_training_carved(tmp_path, tiny_backbone):
    """Without validation and test files, the scored rows are carved from the training file and keyed by their
    row number there: each prompt must hold its own row's statements."""
    from dhrd.reproduction.own_data import own_task

    config = own_data_config(tmp_path, validation_file=None, test_file=None, id_column=None, validation_fraction=0.5)
    args = make_arguments(None, tasks=[str(config)], cot_eval_examples=4, output_dir=str(tmp_path / "r"))
    own = own_task(args, "mine")
    inputs = own.cot_inputs(args, str(tiny_backbone))
    train = comparisons(12)
    assert len(inputs.queries) == 4 and own.scored_split == "validation"
    for query in inputs.queries:
        row = train[int(query.group) - 1]
        assert row["statement_1"] in query.messages[1]["content"] and inputs.gold[query.group] == row["label"]


def test_own_data_cot_answers_are_parsed_else_chosen_by_likelihood_and_scored_by_accuracy(tmp_path, tiny_backbone):
    from dhrd.cot.baseline import Decoded, example_predictions, own_data_queries, score
    from dhrd.data.examples import Example, TeacherItem
    from dhrd.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_backbone))
    examples = [Example(f"c{k}", "custom", "x", k % 2, f"c{k}") for k in range(3)]
    items = [TeacherItem(f"c{k}", "", "", f"Statement 1: a{k}\nQuestion: which?") for k in (2, 1, 0)]
    queries, gold = own_data_queries(examples, items, ("first", "second"), tokenizer)
    assert [q.group for q in queries] == ["c0", "c1", "c2"] and "a1" in queries[1].messages[1]["content"]
    assert gold == {"c0": "first", "c1": "second", "c2": "first"}
    said = ["The second is odd.\nAnswer: second", "Hmm, hard to say", "Answer: **First**"]
    likelihoods = {1: {"first": -1.0, "second": -3.0}}  # the unparsed one: "first" is likelier
    predictions = example_predictions("mine", queries, [Decoded(t, 5, 0.1) for t in said], likelihoods)
    assert predictions.labels == {"c0": "second", "c1": "first", "c2": "first"}
    assert (predictions.parsed_examples, predictions.likelihood_examples) == (2, 1)
    metrics = score("mine", predictions, gold)
    assert metrics["accuracy"] == metrics["score"] == pytest.approx(100 / 3, abs=0.01) and "macro_f1" in metrics


def test_greedy_cot_budget_of_an_own_data_task_fits_its_rationales(tmp_path, tiny_backbone):
    from dhrd.cot.baseline import fitted_max_new_tokens
    from dhrd.modeling import load_tokenizer
    from dhrd.reproduction.own_data import own_task

    tokenizer = load_tokenizer(str(tiny_backbone))
    column = make_arguments(None, tasks=[str(own_data_config(tmp_path))], cot_setting="greedy", output_dir="r")
    explanations = [row["explanation"] for row in comparisons(12)]
    expected = fitted_max_new_tokens(explanations, tokenizer)
    assert own_task(column, "mine").greedy_budget(column, None, tokenizer) == expected  # its rationale column
    cache = write_jsonl(
        tmp_path / "cache.jsonl", [{"idx": f"c{k}", "rationale": e} for k, e in enumerate(explanations)]
    )
    teacher = make_arguments(
        None, tasks=[str(own_data_config(tmp_path, "taught", rationale_column=None))], cot_setting="greedy"
    )
    own = own_task(teacher, "taught")
    assert own.greedy_budget(teacher, str(cache), tokenizer) == expected  # a teacher's cache
    with pytest.raises(DHRDInputError, match="no rationales to fit greedy CoT's budget to"):
        own.greedy_budget(teacher, None, tokenizer)
    assert own.greedy_budget(dataclasses.replace(teacher, cot_setting="paper"), None, tokenizer) is None


def test_zero_shot_cot_refuses_own_labels_that_are_bare_numbers(tmp_path):
    rows = [{**row, "label": 0 if row["label"] == "first" else 1} for row in comparisons(12)]
    numbered = write_jsonl(tmp_path / "numbered.jsonl", rows)
    config = own_data_config(tmp_path, train_file=str(numbered), validation_file=str(numbered), test_file=None)
    with pytest.raises(DHRDInputError, match="bare numbers \\(0, 1\\): name them with label_map"):
        make_arguments(None, tasks=[str(config)], methods=["pooled", "cot-zero-shot"], output_dir=str(tmp_path))
    make_arguments(None, tasks=[str(config)], methods=["pooled"], output_dir=str(tmp_path))  # no CoT: no names needed
    named = own_data_config(
        tmp_path, "named", train_file=str(numbered), validation_file=str(numbered), test_file=None,
        label_map={0: "first", 1: "second"},
    )  # fmt: skip
    args = make_arguments(None, tasks=[str(named)], methods=["cot-zero-shot"], output_dir=str(tmp_path))
    from dhrd.reproduction.own_data import own_task

    assert own_task(args, "named").label_names(args) == ("first", "second")


def test_resuming_a_finished_reproduce_over_own_data_reruns_nothing(finished, monkeypatch):
    args, result = finished
    monkeypatch.setattr(dhrd.training.run, "train", lambda a: pytest.fail(f"trained {a.output_dir}"))
    monkeypatch.setattr(dhrd.benchmarks.timing, "time_classifier", lambda *a, **k: pytest.fail("timed again"))
    again = reproduce(dataclasses.replace(args), progress=False)
    assert again.finished
    assert again.summary["tasks"]["mine"]["paired"] == result.summary["tasks"]["mine"]["paired"]
    assert again.summary["tasks"]["mine"]["methods"] == result.summary["tasks"]["mine"]["methods"]


def test_an_own_data_task_is_named_by_its_stem_beside_superglue_tasks(tmp_path):
    config = own_data_config(tmp_path, "My-Data")
    names, configs = resolve_tasks(["cb", f"{config},copa"], {})
    assert names == ["cb", "my-data", "copa"] and configs == {"my-data": str(config)}
    # resolved once, the name stands for its config (arguments are validated again by reproduce)
    assert resolve_tasks(names, configs) == (names, configs)
    args = make_arguments(None, tasks=f"cb,{config}", max_train_examples="16,my-data:4", output_dir=str(tmp_path))
    assert args.tasks == ["cb", "my-data"] and args.train_cap("my-data") == 4 and args.train_cap("cb") == 16
    # the demo takes an own-data task through its one task option
    assert DemoArguments(task=str(config)).reproduce_arguments().tasks == ["my-data"]
    assert DemoArguments(task="cb").reproduce_arguments().tasks == ["cb"]


def comve_folder(root: Path) -> Path:
    """ComVE's three files as the shared data folder holds them."""
    folder = root / "shared" / "data" / "comve"
    for name, rows in [("train", comparisons(12)), ("validation", comparisons(6, 100)), ("test", comparisons(8, 200))]:
        write_jsonl(folder / f"{name}.jsonl", rows)
    return folder


def test_the_demo_runs_comve_from_the_shared_folder_as_the_example_config_gives_it(tmp_path, monkeypatch):
    from dhrd.reproduction.demo import COMVE_FILES

    monkeypatch.setenv("DHRD_COMVE_DIR", str(comve_folder(tmp_path)))
    monkeypatch.chdir(tmp_path)
    args = DemoArguments(output_dir="runs/demo").reproduce_arguments()
    assert args.tasks == ["comve"] and args.own_data == {"comve": "runs/demo/comve.yaml"}
    written = yaml.safe_load((tmp_path / "runs" / "demo" / "comve.yaml").read_text())
    assert written["test_file"] == "shared/data/comve/test.jsonl"  # relative: no machine's paths in the tables
    assert args.train_cap("comve") == 1000 and args.train["head"] == "linear"
    # one ComVE: the demo's is the example config users copy, less where the files are
    example = yaml.safe_load((Path(__file__).parent.parent / "examples" / "own-data" / "comve.yaml").read_text())
    assert {k: v for k, v in example.items() if k not in COMVE_FILES} == COMVE_SETTINGS
    assert {k: Path(v).name for k, v in example.items() if k in COMVE_FILES} == COMVE_FILES


def test_the_demo_without_comve_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("DHRD_COMVE_DIR", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["demo", "--output-dir", str(tmp_path / "demo")])
    output = result.output.strip()
    assert result.exit_code == 2 and len(output.splitlines()) == 1, output
    assert "ComVE, was not found" in output and "dhrd demo --task cb" in output


def test_an_own_data_task_without_a_test_file_is_scored_on_its_validation_file(tmp_path):
    config = own_data_config(tmp_path, test_file=None)
    args = make_arguments(None, tasks=[str(config)], max_eval_examples=3, output_dir=str(tmp_path))
    from dhrd.reproduction.own_data import own_task

    own = own_task(args, "mine")
    assert own.scored_split == "validation" and own.split_text().startswith("validation file")
    scored = own.scored_examples(args)
    assert len(scored) == 3 and {e.id for e in scored} <= {f"c{k}" for k in range(100, 106)}


@pytest.mark.parametrize(
    "change, fragments",
    [
        ({"test_file": "nowhere/test.jsonl"}, ["mine.yaml", "test_file nowhere/test.jsonl: file not found"]),
        ({"learning_rate": 0.001}, ["mine.yaml", "learning_rate: not a data setting"]),
        ({"train_file": None}, ["mine.yaml", "needs train_file"]),
    ],
)
def test_a_bad_own_data_config_is_one_line_and_exit_2(tmp_path, change, fragments):
    config = own_data_config(tmp_path, **change)
    with pytest.raises(DHRDInputError):
        make_arguments(None, tasks=[str(config)])
    result = runner.invoke(app, ["reproduce", "--tasks", f"cb,{config}", "--output-dir", str(tmp_path / "r")])
    output = result.output.strip()
    assert result.exit_code == 2 and len(output.splitlines()) == 1 and "Traceback" not in output, output
    assert all(f in output for f in fragments), output


def test_a_missing_config_or_unknown_task_is_one_line_and_exit_2(tmp_path):
    for entry, fragment in [
        (str(tmp_path / "absent.yaml"), "absent.yaml: config file not found"),
        ("comve", "unknown task 'comve'"),
        (str(own_data_config(tmp_path, "cb")), "'cb' is taken"),
    ]:
        result = runner.invoke(app, ["reproduce", "--tasks", entry, "--output-dir", str(tmp_path / "r")])
        output = result.output.strip()
        assert result.exit_code == 2 and len(output.splitlines()) == 1 and fragment in output, output
    result = runner.invoke(app, ["demo", "--task", str(tmp_path / "absent.yaml"), "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "absent.yaml: config file not found" in result.output, result.output


def test_superglue_and_own_data_tasks_in_one_run(tmp_path, tiny_backbone, superglue_dir):
    config = own_data_config(tmp_path)
    args = _arguments(
        tmp_path, config, tiny_backbone, tasks=["cb", str(config)], seeds=[1], methods=["pooled"], qps=False,
        data_dir=str(superglue_dir), max_train_examples="6,mine:4", max_eval_examples=4,
        train={"bf16": False, "max_length": 128},
    )  # fmt: skip
    result = reproduce(args, progress=False)
    tasks = result.summary["tasks"]
    assert tasks["cb"]["split"] == "validation" and tasks["mine"]["split"] == "test"
    assert tasks["mine"]["methods"]["pooled"]["train_rows"] == 4 and tasks["cb"]["caps"]["max_train_examples"] == 6
    assert tasks["mine"]["methods"]["pooled"]["eval_examples"] == 4
    # the SuperGLUE average and the paper's table are over CB alone; the own-data task has its own column
    assert result.summary["average"]["methods"]["pooled"]["tasks"] == 1
    assert tasks["mine"]["paper_relative_gain_percent"] == {} and "not_comparable" not in tasks["mine"]
    text = (tmp_path / "runs" / "results.md").read_text()
    assert "on SuperGLUE and own data" in text and "| method | CB | mine (test) | Avg | Rel.Δ |" in text
    assert "| CB |" in text.split("Table 1")[1] and "| mine |" not in text.split("Table 1")[1]


def test_an_own_data_task_without_explanations_asks_the_teacher_for_its_capped_rows(
    tmp_path, monkeypatch, tiny_backbone
):
    import dhrd.teacher.teachers

    asked = {}

    def fake_make_rationales(train_file, columns, output, max_examples, subset_seed, validation_fraction, **kwargs):
        asked.update(train_file=train_file, id=columns.id, max_examples=max_examples, held_out=validation_fraction)
        rows = [{"idx": f"c{k}", "rationale": f"because {k}"} for k in range(12)]
        return write_jsonl(output / "train" / "train.jsonl", rows), {
            "teacher": "fake", "rationales_in_cache": 12, "examples": 12
        }  # fmt: skip

    monkeypatch.setattr(dhrd.teacher.teachers, "make_rationales", fake_make_rationales)
    config = own_data_config(tmp_path, rationale_column=None)
    args = _arguments(tmp_path, config, tiny_backbone, methods=["dhrd"], seeds=[1], qps=False, teacher="a-teacher")
    result = reproduce(args, progress=False)
    train_file = yaml.safe_load(config.read_text())["train_file"]
    assert asked == {"train_file": train_file, "id": "id", "max_examples": 8, "held_out": 0.0}
    cache = tmp_path / "runs" / "rationales" / "a-teacher" / "mine" / "train" / "train.jsonl"
    assert result.rationales["mine"] == {"source": str(cache), "teacher": "fake", "rationales": 12, "examples": 12}
    trained = json.loads((tmp_path / "runs" / "mine" / "dhrd-s1" / "train_args.json").read_text())
    assert (
        trained["rationales"] == str(cache)
        and result.cells["train mine dhrd s1"]["result"]["rows_without_rationale"] == 0
    )
    # without a teacher, one line says where rationales can come from
    with pytest.raises(DHRDInputError, match="no rationales for mine: give its config a rationale_column"):
        reproduce(dataclasses.replace(args, teacher=None, output_dir=str(tmp_path / "other")), progress=False)


def test_the_default_demo_on_a_tiny_model(tmp_path, tiny_backbone, monkeypatch):
    """``dhrd demo`` as the README runs it (ComVE from the shared folder, pooled vs DHRD vs zero-shot CoT that
    answers, throughput), on the tiny model and tiny ComVE files."""
    monkeypatch.setenv("DHRD_COMVE_DIR", str(comve_folder(tmp_path)))
    out = tmp_path / "demo"
    result = runner.invoke(
        app,
        ["demo", "--backbone", str(tiny_backbone), "--output-dir", str(out), "--max-train-examples", "6"],
        env={"COLUMNS": "1000"},
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["finished"] and set(saved["cells"]) == {
        "train comve pooled s1",
        "train comve dhrd s1",
        "cot comve cot-zero-shot s1",
        "qps comve",
    }
    cot = saved["cells"]["cot comve cot-zero-shot s1"]["result"]
    assert cot["parsed_examples"] + cot["likelihood_examples"] == 8  # every test row answers
    train_args = json.loads((out / "comve" / "dhrd-s1" / "train_args.json").read_text())
    assert train_args["head"] == "linear" and train_args["rationale_column"] == "explanation"
