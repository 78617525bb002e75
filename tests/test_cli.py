"""Every kind of bad input: one line naming the file, row and field, exit code 2, no traceback."""

import json

import pytest
from conftest import write_jsonl
from transformers import BertConfig
from typer.testing import CliRunner

from dhrd.cli.commands import app

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output.strip()


def assert_one_line_error(code, output, *fragments):
    assert code == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert output.startswith("error:")
    for fragment in fragments:
        assert fragment in output, output


@pytest.fixture
def files(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\nthe good movie,pos\nthe bad movie,neg\n")
    return tmp_path, train


def train_on(tiny_backbone, train, validation, *extra):
    return run(
        "train",
        "--train-file",
        train,
        "--validation-file",
        validation,
        "--backbone",
        tiny_backbone,
        "--output-dir",
        train.parent / "run",
        "--no-bf16",
        *extra,
    )


def test_missing_file(tiny_backbone, files):
    tmp, train = files
    assert_one_line_error(*train_on(tiny_backbone, train, tmp / "nope.csv"), "nope.csv: file not found")


def test_unreadable_json_line(tiny_backbone, files):
    tmp, train = files
    (tmp / "val.jsonl").write_text('{"text": "fine", "label": "pos"}\n{"text": "broken", "label": \n')
    assert_one_line_error(*train_on(tiny_backbone, train, tmp / "val.jsonl"), "val.jsonl: row 2: unreadable JSON")


def test_missing_column(tiny_backbone, files):
    tmp, train = files
    (tmp / "val.csv").write_text("review,label\nfine,pos\n")
    assert_one_line_error(
        *train_on(tiny_backbone, train, tmp / "val.csv"), "val.csv: row 1: field 'text': missing column"
    )


def test_empty_text(tiny_backbone, files):
    tmp, train = files
    (tmp / "val.csv").write_text('text,label\nfine,pos\n"   ",neg\n')
    assert_one_line_error(*train_on(tiny_backbone, train, tmp / "val.csv"), "val.csv: row 2: field 'text': empty text")


def test_validation_label_never_seen_in_train(tiny_backbone, files):
    tmp, train = files
    (tmp / "val.csv").write_text("text,label\nfine,pos\nso so,mixed\n")
    assert_one_line_error(
        *train_on(tiny_backbone, train, tmp / "val.csv"),
        "val.csv: row 2: field 'label': label 'mixed' never appears in the training labels",
    )


def test_label_outside_the_task_label_set(tiny_backbone, tmp_path):
    write_jsonl(
        tmp_path / "CB" / "train.jsonl",
        [
            {"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 0},
            {"premise": "p", "hypothesis": "h", "label": "maybe", "idx": 1},
        ],
    )
    write_jsonl(tmp_path / "CB" / "val.jsonl", [{"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0}])
    code, output = run(
        "train", "--task", "cb", "--data-dir", tmp_path, "--backbone", tiny_backbone, "--output-dir", tmp_path / "run"
    )
    assert_one_line_error(code, output, "CB/train.jsonl: row 2: field 'label': label 'maybe' is not one of")


def test_unknown_task(tiny_backbone, tmp_path):
    code, output = run("train", "--task", "cb,glue", "--backbone", tiny_backbone, "--output-dir", tmp_path)
    assert_one_line_error(code, output, "unknown task glue")


def test_backbone_not_decoder_only(tmp_path, superglue_dir):
    BertConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    ).save_pretrained(tmp_path / "bert")
    code, output = run(
        "train",
        "--task",
        "cb",
        "--data-dir",
        superglue_dir,
        "--backbone",
        tmp_path / "bert",
        "--output-dir",
        tmp_path / "run",
    )
    assert_one_line_error(code, output, "is a 'bert' model, not a decoder-only language model")


def test_backbone_not_found(tmp_path, superglue_dir):
    code, output = run(
        "train",
        "--task",
        "cb",
        "--data-dir",
        superglue_dir,
        "--backbone",
        tmp_path / "nothing",
        "--output-dir",
        tmp_path / "run",
    )
    assert_one_line_error(code, output, "cannot be found")


def test_max_length_shorter_than_the_template(tiny_backbone, superglue_dir, tmp_path):
    code, output = run(
        "train",
        "--task",
        "cb",
        "--data-dir",
        superglue_dir,
        "--backbone",
        tiny_backbone,
        "--output-dir",
        tmp_path / "run",
        "--max-length",
        "16",
    )
    assert_one_line_error(code, output, "36 of 36 inputs are longer than --max-length 16", "--truncation left")
    assert not (tmp_path / "run" / "model").exists()


def test_evaluate_and_predict_errors(tmp_path):
    code, output = run("evaluate", "--model", tmp_path / "none")
    assert_one_line_error(code, output, "no trained model here")
    code, output = run("predict", "--model", tmp_path / "none", "--output", tmp_path / "p.jsonl")
    assert_one_line_error(code, output, "give --file or --task")


COMMANDS = {"train", "evaluate", "predict", "export", "rationales", "explain", "benchmark", "reproduce", "demo", "push"}


def test_help_for_every_command():
    """Every command the README lists is registered, and its --help names the command and every option."""
    import typer.main

    group = typer.main.get_command(app)
    assert set(group.commands) == COMMANDS
    for name, command in group.commands.items():
        if name == "train":  # its options are DHRDTrainingArguments' (tests/test_trainer_api.py)
            continue
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (name, result.output)
        assert f"Usage: root {name} [OPTIONS]" in result.output, name
        assert command.help and command.help.split()[0] in result.output, name  # its own docstring
        options = [o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
        assert options and [o for o in options if o not in result.output] == [], name


def test_cli_train_evaluate_predict(tiny_backbone, superglue_dir, tmp_path):
    run_dir = tmp_path / "run"
    code, output = run(
        "train",
        "--task",
        "copa",
        "--data-dir",
        superglue_dir,
        "--backbone",
        tiny_backbone,
        "--output-dir",
        run_dir,
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--no-bf16",
        "--head",
        "linear",
    )
    assert code == 0, output
    assert "copa" in output and (run_dir / "model" / "config.json").is_file()
    code, output = run("evaluate", "--model", run_dir, "--output", tmp_path / "m.json")
    assert code == 0, output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["tasks"]["copa"]["examples"] == 4
    code, output = run(
        "predict", "--model", run_dir, "--task", "copa", "--split", "validation", "--output", tmp_path / "p.jsonl"
    )
    assert code == 0, output
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["candidate"] == "choice1" and set(rows[0]["probabilities"]) == {"No", "Yes"}
    # both rows of an example name the same chosen candidate: the one with the higher P(Yes)
    best = max(rows[:2], key=lambda r: r["probabilities"]["Yes"])["candidate"]
    assert rows[0]["example_prediction"] == rows[1]["example_prediction"] == best
