"""Commands generated from their dataclasses: each field is one option, spelled --kebab-case and --snake_case,
whose help shows the field's own default; one --config reader (YAML, JSON, TOML)."""

import dataclasses
import json
import typing
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from dhrd.cli.commands import app
from dhrd.errors import DHRDInputError
from dhrd.options.cli_options import cli_default, option_fields
from dhrd.options.command_args import (
    BenchmarkCommand,
    EvaluateArguments,
    ExplainArguments,
    ExportArguments,
    PredictArguments,
    PushArguments,
    RationalesArguments,
)
from dhrd.reproduction.arguments import SUPERGLUE_TASKS, ReproduceArguments, make_arguments
from dhrd.reproduction.demo import DemoArguments
from dhrd.training.train_options import read_config

runner = CliRunner()
GENERATED = {
    "evaluate": EvaluateArguments,
    "predict": PredictArguments,
    "export": ExportArguments,
    "rationales": RationalesArguments,
    "explain": ExplainArguments,
    "benchmark": BenchmarkCommand,
    "reproduce": ReproduceArguments,
    "demo": DemoArguments,
    "push": PushArguments,
}


def test_every_command_is_generated():
    """train's options are DHRDTrainingArguments' (its own parser: test_cli_startup, test_trainer_api)."""
    assert set(typer.main.get_command(app).commands) - {"train"} == set(GENERATED)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_each_field_is_one_option_with_its_default(name):
    arguments = GENERATED[name]
    command = typer.main.get_command(app).commands[name]
    params = {p.name: p for p in command.params if p.name != "config"}
    hints = typing.get_type_hints(arguments)
    fields = option_fields(arguments)
    assert sorted(params) == sorted(f.name for f in fields)
    every = [o for p in command.params for o in (*p.opts, *p.secondary_opts)]
    assert len(every) == len(set(every)), name  # no spelling names two options
    help_text = " ".join(runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"}).output.split())
    for f in fields:
        param = params[f.name]
        default = cli_default(f, hints[f.name])
        if default is not ...:
            assert param.default == default, (name, f.name)
        spellings = [*param.opts, *param.secondary_opts]
        if f.metadata.get("positional"):
            assert param.param_type_name == "argument" and spellings == [f.name], spellings
        elif "flag" not in f.metadata:
            assert "--" + f.name.replace("_", "-") in spellings and "--" + f.name in spellings, spellings
        else:
            assert f.metadata["flag"] in spellings, spellings
        if default not in (None, ..., False):
            shown = str(default) if param.is_flag is False else ""
            # without spaces: click breaks a long default (rationales' --checks) inside its words
            assert "[default:" + shown.replace(" ", "") in "".join(help_text.split()), (name, f.name)


def test_reproduce_help_shows_the_real_epochs_default():
    text = " ".join(runner.invoke(app, ["reproduce", "--help"], env={"COLUMNS": "200"}).output.split())
    epochs = next(f for f in dataclasses.fields(ReproduceArguments) if f.name == "epochs")
    assert (
        f"--epochs <float> epochs (a config file may give {{task: epochs, default: epochs}}) "
        f"[default: {epochs.default}]" in text
    )


def test_the_light_task_names_are_the_tasks():
    from dhrd.data.tasks import TASKS

    assert list(SUPERGLUE_TASKS) == list(TASKS)


def test_evaluate_takes_both_spellings():
    for spelling in ("--text_column", "--text-column"):
        result = runner.invoke(app, ["evaluate", "--model", "/nonexistent", spelling, "x"])
        assert "No such option" not in result.output and result.exit_code == 2, result.output
        assert "no trained model" in result.output


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_one_config_reader_for_train_and_reproduce(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    settings = {"seeds": [4], "learning-rate": 0.001}
    if suffix == ".toml":
        path.write_text("seeds = [4]\nlearning-rate = 0.001\n")
    elif suffix == ".yaml":
        path.write_text("seeds: [4]\nlearning-rate: 0.001\n")
    else:
        path.write_text(json.dumps(settings))
    args = make_arguments(path, tasks="cb")
    assert (args.seeds, args.learning_rate) == ([4], 0.001)
    train = tmp_path / f"t{suffix}"
    train.write_text(path.read_text().replace("seeds", "num_train_epochs").replace("[4]", "4"))
    assert read_config(train, {"num_train_epochs", "learning_rate"}, "dhrd train") == {
        "num_train_epochs": 4,
        "learning_rate": 0.001,
    }
    with pytest.raises(DHRDInputError, match="unknown setting seeds"):
        read_config(path, {"learning_rate"}, "dhrd train")


def test_reproduce_command_line_overrides_its_config(tmp_path, monkeypatch):
    import dhrd.reproduction.runner as runner_module

    seen = {}

    def reproduce(args):
        seen["args"] = args
        raise DHRDInputError("stopped before any work")

    monkeypatch.setattr(runner_module, "reproduce", reproduce)
    config = tmp_path / "c.toml"
    config.write_text('tasks = "cb"\nepochs = 2\nlearning_rate = 0.01\n')
    result = runner.invoke(app, ["reproduce", "--config", str(config), "--learning_rate", "0.5", "--seeds", "7,8"])
    assert result.exit_code == 2 and "stopped before any work" in result.output
    args = seen["args"]
    assert (args.tasks, args.epochs, args.learning_rate, args.seeds) == (["cb"], 2, 0.5, [7, 8])


def test_every_command_takes_config():
    commands = typer.main.get_command(app).commands
    for name in GENERATED:
        assert "--config" in [o for p in commands[name].params for o in p.opts], name


@pytest.fixture
def predictions(monkeypatch):
    """What ``dhrd predict`` would predict with, recorded before any model loads."""
    import dhrd.inference.prediction

    seen = {}

    def predict(*args, **kwargs):
        seen.update(args=args, **kwargs)
        raise DHRDInputError("stopped before any work")

    monkeypatch.setattr(dhrd.inference.prediction, "predict", predict)
    return seen


def test_predict_reads_its_config_as_its_options(tmp_path, predictions):
    config = tmp_path / "predict.yaml"
    config.write_text(
        "model: m\noutput: p.jsonl\nkeep-columns: [a, b]\nbatch_size: '8'\nengine: onnxruntime\nrestart: true\n"
    )
    result = runner.invoke(app, ["predict", "--config", str(config), "--batch_size", "4", "--file", "x.csv"])
    assert result.exit_code == 2 and "stopped before any work" in result.output, result.output
    model, output, file, *_, batch_size = predictions["args"]
    assert (model, output, file, batch_size) == (Path("m"), Path("p.jsonl"), "x.csv", 4)
    assert predictions["keep_columns"] == ("a", "b") and predictions["engine"] == "onnxruntime"
    assert predictions["resume"] is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: m\noutput: p.jsonl\nengine: tensorflow\n", "engine: "),
        ("model: m\noutput: p.jsonl\nbatch_size: many\n", "batch_size: "),
        ("model: m\nbatch-sise: 3\n", "unknown setting batch_sise"),
        ("model: m\n", "Missing option '--output'"),
    ],
)
def test_a_bad_config_is_one_line(tmp_path, predictions, text, message):
    config = tmp_path / "predict.yaml"
    config.write_text(text)
    result = runner.invoke(app, ["predict", "--config", str(config)])
    assert result.exit_code == 2 and message in result.output and not predictions, result.output


def test_a_repeated_option_from_a_toml_list(tmp_path, monkeypatch):
    import dhrd.cot.explain

    seen = {}
    monkeypatch.setattr(dhrd.cot.explain, "explain", lambda model, texts, *a, **k: seen.update(texts=texts) or [])
    config = tmp_path / "explain.toml"
    config.write_text('model = "m"\ntext = ["one", "two"]\nmax_new_tokens = 5\n')
    result = runner.invoke(app, ["explain", "--config", str(config)])
    assert result.exit_code == 0 and seen["texts"] == ["one", "two"], result.output
