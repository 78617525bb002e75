"""Your own data end to end: label names (--label-names) and a task instruction (--instruction) reach the
teacher's prompt, the reasoning head's sequence, the classifier's input, the saved model and predictions."""

import json

import pytest
from conftest import write_jsonl
from huggingface_hub import ModelCard
from test_teacher import _completion, server  # noqa: F401  (the fake OpenAI-compatible server fixture)
from typer.testing import CliRunner

from dhrd.cli.commands import app
from dhrd.data.inputs import Columns, DataSpec, file_label_names, load_file_examples, parse_label_map
from dhrd.errors import DHRDInputError
from dhrd.teacher.prompts import SENTINEL, TeacherItem, check_output, file_items, file_titles
from dhrd.teacher.teachers import make_rationales

runner = CliRunner()
WORDS = ["good", "great", "fine", "bad", "awful", "poor"]
INSTRUCTION = "Is this movie review positive or negative?"
NAMES = "0=negative,1=positive"


def run(*args):
    # wide: rich folds a long table title (a long tmp path) mid-word at 80 columns, and the checks read the words
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    return result.exit_code, result.output.strip()


def reviews(n: int, start: int = 0) -> list[dict]:
    """Integer labels, as most public sentiment sets ship them: 1 positive, 0 negative."""
    return [
        {"id": f"r{k}", "text": f"the film was {WORDS[k % 6]}", "label": int(k % 6 < 3)}
        for k in range(start, start + n)
    ]


def test_label_names_parse_in_order_and_bad_ones_are_refused():
    assert parse_label_map("0=negative, 1=positive") == (("0", "negative"), ("1", "positive"))
    assert parse_label_map({1: "positive", 0: "negative"}) == (("1", "positive"), ("0", "negative"))
    assert parse_label_map(None) == ()
    for bad, message in [
        ("0=negative,1", "'1' has no '='"),
        ("0=negative,0=positive", "the value '0' is given twice"),
        ("0=good,1=good", "the name 'good' is given twice"),
        ("0=1,1=0", "the name '1' is also a value of another label"),
        ("0=,1=positive", "empty value or name"),
    ]:
        with pytest.raises(DHRDInputError, match=message):
            parse_label_map(bad)


def test_named_labels_take_the_given_order_and_an_unnamed_label_names_its_row(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", reviews(6))
    named = Columns(label_map=parse_label_map("1=positive,0=negative"))
    assert file_label_names(path, named) == ("positive", "negative")  # the order given, not sorted
    assert file_label_names(path, Columns()) == ("0", "1")
    examples = load_file_examples(path, named, ("positive", "negative"))
    assert [e.label for e in examples] == [0, 0, 0, 1, 1, 1]  # label 1 is "positive", index 0
    # a file that already says the names reads the same
    by_name = write_jsonl(tmp_path / "n.jsonl", [{"text": "fine", "label": "positive"}, {"text": "bad", "label": 0}])
    assert [e.label for e in load_file_examples(by_name, named, ("positive", "negative"))] == [0, 1]
    three = write_jsonl(tmp_path / "3.jsonl", reviews(2) + [{"text": "meh", "label": 2}])
    with pytest.raises(DHRDInputError, match=r"3.jsonl: row 3: field 'label': label '2' has no name in --label-names"):
        file_label_names(three, named)


def test_the_instruction_ends_the_classifier_input_only_when_asked(tmp_path):
    rows = [{"text": "the film was good", "text2": "it was", "label": 1}, {"text": "bad", "text2": "so", "label": 0}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    spec = DataSpec(train_file=str(path), text_pair_column="text2", label_map=NAMES, instruction=f"  {INSTRUCTION} ")
    spec.validate()
    assert spec.label_map == {"0": "negative", "1": "positive"}  # saved with the model as a plain mapping
    # by default the instruction is the teacher's only (it cost the student 7.7 points on CB as a CSV)
    assert load_file_examples(path, spec.columns, spec.label_names())[0].text == "the film was good\nit was"
    spec.instruction_in_input = True
    example = load_file_examples(path, spec.columns, spec.label_names())[0]
    assert example.text == f"the film was good\nit was\n{INSTRUCTION}"
    with pytest.raises(DHRDInputError, match="are for your own files"):
        DataSpec(tasks=["cb"], instruction=INSTRUCTION).validate()


def test_teacher_items_state_the_task_and_the_label_names(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", reviews(4))
    columns = Columns(label_map=parse_label_map(NAMES), instruction="not for the teacher's layout")
    items, answers = file_items(path, columns, instruction=INSTRUCTION)
    assert answers == {"negative": "negative", "positive": "positive"}
    assert items[0].input == f"Text: the film was good\nQuestion: {INSTRUCTION}"
    assert (items[0].label, items[0].answer, items[3].answer) == ("positive", "positive", "negative")
    # without an instruction the question still names the labels
    items, _ = file_items(path, Columns(label_map=parse_label_map(NAMES)))
    assert items[0].input.endswith("Question: Which of these labels fits the text: negative, positive?")


def _explaining_server(seen):
    def reply(number, body):
        user = body["messages"][-1]["content"]
        seen.append(user)
        answer = user.split("Answer: ", 1)[1].split("\n", 1)[0]
        return 200, _completion(f"The review praises the film in plain words. {SENTINEL}\nAnswer: {answer}")

    return reply


def test_a_teacher_on_bare_numbers_stops_with_one_line_saying_how_to_name_them(tmp_path):
    from dhrd.cli.entry_point import show_messages

    show_messages()  # dhrd's information lines printed, as the dhrd command prints them (the row choice was)
    train = write_jsonl(tmp_path / "train.jsonl", reviews(6))
    code, output = run("rationales", "--train-file", train, "--teacher", "m", "--base-url", "http://127.0.0.1:9/v1")
    assert code == 2 and "Traceback" not in output, output
    assert output.startswith("error: ") and len(output.splitlines()) == 1, output
    assert "train.jsonl: the labels of column 'label' are bare numbers (0, 1)" in output
    assert "--label-names 0=<name>,1=<name>" in output


def test_teacher_prompts_carry_the_instruction_and_names_and_the_cache_tracks_them(server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # the default cache folder, rationales/<teacher>--<prompt id>, is made here
    train = write_jsonl(tmp_path / "train.jsonl", reviews(6))
    seen = []
    url, _ = server(_explaining_server(seen))
    settings = dict(train_file=train, teacher="m", base_url=url, progress=False, instruction=INSTRUCTION)
    settings["validation_fraction"] = 0  # every row asked about (training gets a validation file)
    columns = Columns(label_map=parse_label_map(NAMES))
    path, summary = make_rationales(columns=columns, **settings)
    assert summary["outcomes"] == {"ok": 6}
    assert f"Text: the film was good\nQuestion: {INSTRUCTION}\nAnswer: positive\nReasoning:" in seen
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["idx"]: r["label"] for r in rows} == {k: "positive" if k <= 3 else "negative" for k in range(1, 7)}
    # another instruction or other names is another question: a new cache, never mixed with this one
    other, _ = make_rationales(columns=columns, **{**settings, "instruction": "Did the critic like it?"})
    renamed, _ = make_rationales(columns=Columns(label_map=parse_label_map("0=bad,1=good")), **settings)
    assert len({path.parent.parent, other.parent.parent, renamed.parent.parent}) == 3


def test_import_reads_raw_label_values_through_the_names(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", reviews(4))
    columns = Columns(id="id", label_map=parse_label_map(NAMES))
    mine = write_jsonl(tmp_path / "mine.jsonl", [{"id": "r0", "label": 1, "rationale": "It is praised."}])
    path, summary = make_rationales(train_file=train, columns=columns, import_file=mine, output=tmp_path / "c")
    assert summary["written"] == 1 and json.loads(path.read_text())["label"] == "positive"
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"id": "r0", "label": 0, "rationale": "It is praised."}])
    with pytest.raises(DHRDInputError, match="wrong.jsonl: row 1: field 'label': says id 'r0' has label 'negative'"):
        make_rationales(train_file=train, columns=columns, import_file=wrong, output=tmp_path / "d")


def test_named_labels_and_instruction_train_save_evaluate_and_predict(tiny_backbone, tmp_path):
    from dhrd.data.inputs import ANSWER_PREFIX, REASON_PREFIX
    from dhrd.training.trainer import prepare_run
    from dhrd.training.training_args import DHRDTrainingArguments

    rows = reviews(12)
    for row in rows:
        row["why"] = f"the review calls the film {row['text'].split()[-1]}"
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    validation = write_jsonl(tmp_path / "val.jsonl", reviews(6, 12))
    settings = dict(
        train_file=str(train), validation_file=str(validation), backbone=str(tiny_backbone), label_map=NAMES,
        instruction=INSTRUCTION, instruction_in_input=True, id_column="id", rationale_column="why", method="dhrd",
        bf16=False, max_length=64,
        num_train_epochs=1, per_device_train_batch_size=4,
    )  # fmt: skip
    prepared = prepare_run(DHRDTrainingArguments(output_dir=str(tmp_path / "prep"), **settings))
    first = prepared.trainer.train_dataset[0]
    sequence = prepared.tokenizer.decode(first["input_ids"])
    # [x, Reasoning:, r, Final Answer:, y]: x ends with the instruction, y is the label's name
    assert sequence == (
        f"the film was good\n{INSTRUCTION}{REASON_PREFIX}the review calls the film good{ANSWER_PREFIX}positive"
        + prepared.tokenizer.eos_token
    )

    code, output = run(
        "train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone,
        "--output-dir", tmp_path / "run", "--no-bf16", "--epochs", "1", "--batch-size", "4", "--method", "dhrd",
        "--rationale-column", "why", "--id-column", "id", "--label-names", NAMES, "--instruction", INSTRUCTION,
        "--instruction-in-input", "--max-length", "64",
    )  # fmt: skip
    assert code == 0, output
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    code, output = run("evaluate", "--model", tmp_path / "run", "--file", validation)  # raw 0/1 labels
    assert code == 0, output
    out = tmp_path / "p.jsonl"
    code, output = run("predict", "--model", tmp_path / "run", "--file", validation, "--output", out)
    assert code == 0, output
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert {p["prediction"] for p in predictions} <= {"negative", "positive"}
    assert [p["label"] for p in predictions] == ["positive"] * 3 + ["negative"] * 3  # raw 1/0, read as names


def test_texts_are_titled_by_their_columns_in_the_teachers_prompt(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"premise": "It rained.", "hypothesis_text": "It was wet.", "y": 0},
                                              {"premise": "Sun.", "hypothesis_text": "Dry.", "y": 1}])  # fmt: skip
    columns = Columns("premise", "y", "hypothesis_text", label_map=parse_label_map("0=entailment,1=neutral"))
    assert file_titles(columns) == ("Premise", "Hypothesis text")
    assert file_titles(Columns()) == ("Text", "Second text")
    items, _ = file_items(path, columns, instruction="Does the premise entail the hypothesis?")
    assert (
        items[0].input
        == "Premise: It rained.\nHypothesis text: It was wet.\nQuestion: Does the premise entail the hypothesis?"
    )


def test_an_answer_is_truncated_only_when_the_budget_cut_its_explanation():
    item = TeacherItem(1, "positive", "positive", "Text: good")
    answers = ["negative", "positive"]
    ended = "The review calls the film good, which is praise."
    # stopped of itself without the sentinel: a whole explanation, kept
    assert check_output(ended, item, answers, finish_reason="stop").problems == []
    assert check_output(ended, item, answers, finish_reason="stop").rationale == ended
    # cut by the budget, or the reason unknown (an imported text): no sentinel means cut
    assert check_output("The review calls the", item, answers, finish_reason="length").problems == ["truncated"]
    assert check_output("The review calls the", item, answers).problems == ["truncated"]
    # the budget cut only the answer line after the sentinel: the explanation is whole
    assert check_output(f"{ended} {SENTINEL}\nAnswer: pos", item, answers, finish_reason="length").problems == []


@pytest.mark.integration
@pytest.mark.slow  # 2-4 minutes of SmolLM2 as teacher and student; tests/test_walkthrough.py runs the block by default
def test_the_readme_walkthrough_from_a_csv_to_predictions(shared_superglue, smollm2, tmp_path):
    """The README's four commands on CB exported as a CSV, with the shared SmolLM2 as student (and, to stay
    fast, as teacher too: a few rows, a short budget, rationales kept whatever the checks say)."""
    import subprocess
    import sys
    from pathlib import Path

    scripts = Path(__file__).parent.parent / "scripts"
    data = tmp_path / "cb-csv"
    exported = subprocess.run(
        [sys.executable, scripts / "superglue_to_csv.py", "--task", "cb", "--output", data,
         "--data-dir", shared_superglue], capture_output=True, text=True, check=True,
    )  # fmt: skip
    describe = exported.stdout.strip().splitlines()[-1]
    assert describe.startswith("describe it to dhrd with: --text-column premise --text-pair-column hypothesis")
    columns = ["--text-column", "premise", "--text-pair-column", "hypothesis", "--id-column", "id",
               "--label-names", "0=entailment,1=contradiction,2=neutral"]  # fmt: skip
    instruction = ["--instruction", "Does the premise entail the hypothesis, contradict it, or neither?"]

    # 1. rationales
    code, output = run(
        "rationales", "--train-file", data / "train.csv", "--validation-file", data / "validation.csv", *columns,
        *instruction, "--teacher", smollm2,
        "--max-examples", "8", "--subset-seed", "1", "--max-new-tokens", "32", "--on-problem", "keep",
        "--output", tmp_path / "rationales",
    )  # fmt: skip
    assert code == 0, output
    cache = tmp_path / "rationales" / "train" / "train.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rows) == 8 and {r["label"] for r in rows} <= {"entailment", "contradiction", "neutral"}
    assert "train with: dhrd train --train-file" in " ".join(output.split())

    # 2. train with --method dhrd on the rows that have rationales
    run_dir = tmp_path / "run"
    code, output = run(
        "train", "--train-file", data / "train.csv", "--validation-file", data / "validation.csv", *columns,
        *instruction, "--method", "dhrd", "--rationales", cache, "--max-train-examples", "8", "--subset-seed", "1",
        "--epochs", "1", "--output-dir", run_dir, "--backbone", smollm2,
    )  # fmt: skip
    assert code == 0, output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train_rows"] == 8 and metrics["rows_without_rationale"] == 8 - sum(
        bool(r["rationale"]) for r in rows
    )
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert list(config["id2label"].values()) == ["entailment", "contradiction", "neutral"]

    # 3. evaluate on the validation file: the score training reported
    code, output = run("evaluate", "--model", run_dir, "--file", data / "validation.csv")
    assert code == 0, output
    evaluated = json.loads((run_dir / "model" / "eval-file-validation.csv.json").read_text())
    assert evaluated["tasks"]["custom"]["accuracy"] == pytest.approx(metrics["tasks"]["custom"]["accuracy"], abs=1e-6)

    # 4. predict: every row, named labels, keyed by the id column
    predictions = tmp_path / "predictions.jsonl"
    code, output = run("predict", "--model", run_dir, "--file", data / "validation.csv", "--output", predictions)
    assert code == 0, output
    predicted = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(predicted) == 56 and predicted[0]["id"] == "0"
    assert {p["prediction"] for p in predicted} <= {"entailment", "contradiction", "neutral"}
    accuracy = 100 * sum(p["prediction"] == p["label"] for p in predicted) / len(predicted)
    assert accuracy == pytest.approx(metrics["tasks"]["custom"]["accuracy"], abs=1e-3)


def test_a_run_saved_before_these_settings_existed_is_still_the_same_run(tmp_path):
    """A finished run whose train_args.json predates label_map / instruction / instruction_in_input trained
    with their defaults: it is reused, not refused as a run with other settings."""
    from dataclasses import asdict

    from dhrd.training.resume import changed_settings
    from dhrd.training.training_args import DHRDTrainingArguments

    args = DHRDTrainingArguments(output_dir=str(tmp_path), task="rte")
    saved = {k: v for k, v in asdict(args).items() if k not in ("label_map", "instruction", "instruction_in_input")}
    assert changed_settings(saved, args) == []
    assert changed_settings(saved, DHRDTrainingArguments(output_dir=str(tmp_path), task="rte", lora_r=8)) == ["lora_r"]
    # where an instruction goes matters only where there is one
    assert (
        changed_settings(saved, DHRDTrainingArguments(output_dir=str(tmp_path), task="rte", instruction_in_input=True))
        == []
    )
    told = {**saved, "instruction": INSTRUCTION}
    inside = DHRDTrainingArguments(
        output_dir=str(tmp_path), task="rte", instruction=INSTRUCTION, instruction_in_input=True
    )
    assert changed_settings(told, inside) == ["instruction_in_input"]


def test_a_finished_cell_made_with_other_settings_is_refused_in_one_line(tmp_path):
    """A reproduce cell's finished run is reused only under the settings it was made with: else one line naming
    them, where it is and what to do (the words a resumed run and an alpha search use too)."""
    import json

    from dhrd.reproduction.cells import _same_run
    from dhrd.training.training_args import DHRDTrainingArguments

    args = DHRDTrainingArguments(output_dir=str(tmp_path), task="rte")
    assert not _same_run(args, tmp_path)  # nothing saved: not the same run, nothing refused
    (tmp_path / "train_args.json").write_text(json.dumps(args.to_dict()))
    assert _same_run(args, tmp_path)
    other = DHRDTrainingArguments(output_dir=str(tmp_path), task="rte", lora_r=8)
    message = rf"^{tmp_path}: holds a finished run with other settings \(lora_r\); use another --output-dir, or "
    with pytest.raises(DHRDInputError, match=message + "--restart to run it again$"):
        _same_run(other, tmp_path)


def test_label_names_as_a_string_or_a_mapping_are_the_same_run(tmp_path):
    """--label-names 0=a,1=b on the command line and {"0": "a", "1": "b"} in Python train the same model: a run
    saved with one resumes under the other; other names are another run."""
    from dhrd.training.resume import changed_settings
    from dhrd.training.training_args import DHRDTrainingArguments

    def args(label_map):
        return DHRDTrainingArguments(output_dir=str(tmp_path), task="rte", label_map=label_map)

    saved = args("0=negative,1=positive").to_dict()
    assert changed_settings(saved, args({"0": "negative", "1": "positive"})) == []
    assert changed_settings(saved, args({"0": "negative", "1": "good"})) == ["label_map"]
    assert changed_settings(saved, args("1=positive,0=negative")) == ["label_map"]  # the order is the label order


def test_rationales_for_other_rows_than_the_run_trains_on_say_why_none_pair(tiny_backbone, tmp_path):
    """The CI walkthrough: rationales made with a carved validation split, training given --validation-file and
    a sample of 8: no rationale was for a training row, and the error said only 'check --rationales'."""
    train = write_jsonl(tmp_path / "train.jsonl", reviews(12))
    validation = write_jsonl(tmp_path / "val.jsonl", reviews(6, 12))
    cache = write_jsonl(
        tmp_path / "r.jsonl", [{"idx": f"r{k}", "label": "negative", "rationale": "it is bad"} for k in (9, 10, 11)]
    )
    code, output = run(
        "train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone,
        "--output-dir", tmp_path / "run", "--no-bf16", "--epochs", "1", "--method", "dhrd", "--rationales", cache,
        "--id-column", "id", "--label-names", NAMES, "--max-length", "64", "--selection", "first",
        "--max-train-examples", "3",
    )  # fmt: skip
    assert code == 2
    assert "no training example has a rationale" in output and "3 rationales were read, none for the 3 rows" in output


def test_a_test_file_is_scored_once_by_the_kept_model_and_capped_as_validation_is(tiny_backbone, tmp_path):
    from dhrd.training.run import train
    from dhrd.training.training_args import DHRDTrainingArguments

    train_file = write_jsonl(tmp_path / "train.jsonl", reviews(12))
    validation = write_jsonl(tmp_path / "val.jsonl", reviews(6, 12))
    test = write_jsonl(tmp_path / "test.jsonl", reviews(8, 18))
    settings = dict(
        train_file=str(train_file), validation_file=str(validation), test_file=str(test), id_column="id",
        backbone=str(tiny_backbone), bf16=False, max_length=64, num_train_epochs=1, per_device_train_batch_size=4,
        max_eval_examples=5, subset_seed=3,
    )  # fmt: skip
    result = train(DHRDTrainingArguments(output_dir=str(tmp_path / "run"), **settings))
    scored = result.metrics["test"]
    assert scored["file"] == str(test) and scored["tasks"]["custom"]["examples"] == 5
    saved = json.loads((tmp_path / "run" / "test-predictions.json").read_text())
    assert len(saved["ids"]) == 5 and set(saved["ids"]) <= {f"r{k}" for k in range(18, 26)}
    validation_ids = json.loads((tmp_path / "run" / "validation-predictions.json").read_text())["ids"]
    assert set(validation_ids) <= {f"r{k}" for k in range(12, 18)}
    assert (tmp_path / "run" / "test-confusion.png").is_file()
    # a test file is a file of your own: with a SuperGLUE task it is refused in one line
    code, output = run("train", "--config", write_config(tmp_path, settings), "--output-dir", tmp_path / "run")
    assert code == 0 and "test metrics" in output and "test.jsonl" in output, output  # the finished run, shown
    code, output = run("train", "--task", "cb", "--test-file", test, "--output-dir", tmp_path / "cb")
    assert code == 2 and "--test-file are for your own files" in output and len(output.splitlines()) == 1
    code, output = run("train", "--train-file", train_file, "--test-file", tmp_path / "no.jsonl")
    assert code == 2 and "--test-file" in output and "no.jsonl" in output and len(output.splitlines()) == 1


def test_a_run_scored_on_its_test_file_alone_does_not_read_its_validation_file(tiny_backbone, tmp_path, monkeypatch):
    """--skip-validation (dhrd reproduce's and dhrd demo's cells with a test file): with one epoch nothing is
    validated, so the validation file is not read nor scored; the same run asked again with validation scores
    (dhrd train's default) is resumed from its last checkpoint and scored on it."""
    from dhrd.training.run import train
    from dhrd.training.training_args import DHRDTrainingArguments

    read = []
    split = DataSpec.split
    monkeypatch.setattr(DataSpec, "split", lambda self, name, *a, **k: read.append(name) or split(self, name, *a, **k))
    settings = dict(
        train_file=str(write_jsonl(tmp_path / "train.jsonl", reviews(12))),
        validation_file=str(write_jsonl(tmp_path / "val.jsonl", reviews(6, 12))),
        test_file=str(write_jsonl(tmp_path / "test.jsonl", reviews(8, 18))),
        id_column="id", backbone=str(tiny_backbone), bf16=False, max_length=64, num_train_epochs=1,
        per_device_train_batch_size=4, output_dir=str(tmp_path / "run"),
    )  # fmt: skip
    metrics = train(DHRDTrainingArguments(**settings, score_validation=False)).metrics
    assert "validation" not in read and {"train", "test"} <= set(read)
    assert metrics["validation_scored"] is False and "score" not in metrics and metrics["eval_rows"] == 0
    assert metrics["test"]["tasks"]["custom"]["examples"] == 8
    assert not (tmp_path / "run" / "validation-predictions.json").exists()
    card = ModelCard.load(tmp_path / "run" / "model" / "README.md")  # the test file's scores are the run's
    assert {(r.dataset_split, r.dataset_name) for r in card.data.eval_results} == {("test", "test.jsonl")}
    assert "| test | training run's evaluation | custom |" in card.text and "| validation |" not in card.text
    read.clear()
    metrics = train(DHRDTrainingArguments(**settings)).metrics  # the default: the validation file's metrics too
    assert "validation" in read and metrics["tasks"]["custom"]["examples"] == 6 and metrics["eval_rows"] == 6
    assert "validation_scored" not in metrics and metrics["resumed_from"] is not None
    assert len(json.loads((tmp_path / "run" / "validation-predictions.json").read_text())["ids"]) == 6
    card = ModelCard.load(tmp_path / "run" / "model" / "README.md")
    assert {(r.dataset_split, r.dataset_name) for r in card.data.eval_results} == {
        ("validation", "val.jsonl"),
        ("test", "test.jsonl"),
    }
    # more than one epoch with the best kept: validated every epoch, so read, but not scored again at the end
    read.clear()
    more = {**settings, "num_train_epochs": 2, "output_dir": str(tmp_path / "two")}
    metrics = train(DHRDTrainingArguments(**more, score_validation=False)).metrics
    assert "validation" in read and len(metrics["epochs"]) == 2 and "score" not in metrics
    code, output = run(
        "train", "--config", write_config(tmp_path, settings), "--skip-validation", "--output-dir", tmp_path / "cli"
    )
    assert code == 0 and "validation: not scored" in output and "test metrics" in output, output
    del settings["test_file"]
    with pytest.raises(DHRDInputError, match="--skip-validation needs --test-file"):
        DHRDTrainingArguments(**settings, score_validation=False).validate()


def write_config(root, settings: dict):
    path = root / "config.json"
    path.write_text(json.dumps(settings))
    return path
