"""The command line answers help, --version and option errors without importing torch or transformers (which
take seconds), and ``dhrd train``'s table of options (dhrd.training.train_options) answers exactly as its real
parser does."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from dhrd.benchmarks.startup_benchmark import COMMANDS, import_seconds, run_cli, startup_markdown
from dhrd.errors import DHRDInputError
from dhrd.training import train_options
from dhrd.training.argparser import FIELDS, DHRDArgumentParser, parse_train_arguments


@pytest.fixture
def current_table(monkeypatch, tmp_path):
    """A table made from today's parser, in a cache of the test's own (the packaged one may be stale while the
    options are being changed: test_packaged_table_is_current says so)."""
    monkeypatch.setenv("DHRD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(train_options, "PACKAGED", tmp_path / "no-packaged-table.json")
    train_options.remember(DHRDArgumentParser(), FIELDS)
    assert list((tmp_path / "cache" / "train-options").glob("*.json")), "the real parser left no table"
    return train_options.load_table()


@pytest.mark.parametrize("args", [*COMMANDS, ("train", "--config"), ("train", "--head", "cnn"), ("push",)])
def test_help_version_and_option_errors_import_neither_torch_nor_transformers(current_table, args):
    run = run_cli(args)
    assert run["loaded"] == [], (args, run["loaded"], run["stderr"])
    assert run["exit_code"] in (0, 2), run["stderr"]
    if run["exit_code"] == 2:  # one line, never a usage block or a traceback
        lines = run["stderr"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), run["stderr"]
    else:
        assert run["stdout"].strip() and not run["stderr"], run["stderr"]


EVERY_HELP = """import sys, typer.main
from typer.testing import CliRunner
from dhrd.cli.commands import app
runner = CliRunner()
for args in [["--help"], ["--version"], *([name, "--help"] for name in typer.main.get_command(app).commands)]:
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and result.output.strip(), (args, result.output)
print(sorted(typer.main.get_command(app).commands), [m for m in ("torch", "transformers") if m in sys.modules])
"""


def test_every_commands_help_imports_neither_torch_nor_transformers(current_table):
    done = subprocess.run([sys.executable, "-c", EVERY_HELP], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[]") and "'train'" in done.stdout, done.stdout


def test_importing_the_package_is_light_and_its_names_load_on_use():
    code = (
        "import sys, dhrd; v = dhrd.__version__; e = dhrd.DHRDInputError; "
        "print(v, e.__name__, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[1:] == ["DHRDInputError", "False", "False"], done.stderr
    import dhrd

    assert all(getattr(dhrd, name) is not None for name in dhrd.__all__)
    assert set(dhrd.__all__) <= set(dir(dhrd)) and "__version__" in dir(dhrd)
    with pytest.raises(AttributeError):
        dhrd.no_such_name  # noqa: B018


def test_packaged_table_is_current():
    """Fails after a change to dhrd train's options (train_options.SOURCES: training_args.py and its field groups,
    argparser.py, train_options.py) until the packaged table is regenerated; until then the CLI builds the real
    parser once and caches its table."""
    live = {"key": train_options.table_key(), **train_options.table_of(DHRDArgumentParser(), FIELDS)}
    packaged = json.loads(train_options.PACKAGED.read_text(encoding="utf-8"))
    assert packaged == live, "regenerate it: python -m dhrd.training.train_options"


@pytest.mark.parametrize("columns", ["50", "120", "200"])
def test_rebuilt_parser_prints_the_same_help(current_table, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    assert train_options.parser_from(current_table).format_help() == DHRDArgumentParser().format_help()


def _outcome(parse, argv):
    """What a parse does: ('error', its line), ('help', the text printed) or 'passes'."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            parse(list(argv))
    except DHRDInputError as error:
        return "error", str(error)
    except SystemExit as done:
        return "help", done.code, printed.getvalue()
    return "passes"


BAD = [
    ["--lr", "abc"],
    ["--seed", "1.5"],
    ["--head", "cnn"],
    ["--truncation", "right"],
    ["--report_to"],
    ["--epochs"],
    ["--no-such-option", "--lr", "abc"],
    ["--task", "cb", "stray"],
    ["--lo", "x"],  # ambiguous abbreviation: the same candidates in the same order
    ["--learning", "x"],
    ["--config"],
    ["--alpha", "auto", "--beta", "x"],
    ["--lr", "1", "-h"],
    ["--help", "--lr", "x"],
]
SLOW = [["--bf16", "maybe"], ["--debug", "nonsense"]]  # values only the real parser's own conversions judge


@pytest.mark.parametrize("argv", BAD)
def test_rebuilt_parser_answers_as_the_real_one(current_table, argv):
    fast = _outcome(train_options.check_train_arguments, argv)
    assert fast != "passes" and fast == _outcome(parse_train_arguments, argv)


@pytest.mark.parametrize("argv", SLOW)
def test_what_the_table_cannot_judge_goes_to_the_real_parser(current_table, argv):
    assert _outcome(train_options.check_train_arguments, argv) == "passes"
    assert _outcome(parse_train_arguments, argv)[0] == "error"


def test_config_errors_are_the_same(current_table, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: abc\nepochs_typo: 3\n")
    fast = _outcome(train_options.check_train_arguments, ["--config", str(config)])
    assert fast == _outcome(parse_train_arguments, ["--config", str(config)])
    assert "unknown setting epochs_typo" in fast[1]
    config.write_text("learning_rate: abc\n")  # a string default is converted as a command-line value is
    fast = _outcome(train_options.check_train_arguments, ["--config", str(config)])
    assert fast == _outcome(parse_train_arguments, ["--config", str(config)]) and "invalid float" in fast[1]


def test_a_table_for_other_versions_is_never_used(current_table, monkeypatch):
    monkeypatch.setattr(train_options, "table_key", lambda: {**current_table["key"], "transformers": "0.0.1"})
    assert train_options.load_table() is None
    assert _outcome(train_options.check_train_arguments, ["--lr", "abc"]) == "passes"  # the real parser answers


def test_rationales_checks_default_is_the_prompts_checks():
    from dhrd.options.command_args import RATIONALE_CHECKS
    from dhrd.teacher.prompts import CHECKS

    assert RATIONALE_CHECKS == tuple(CHECKS)


def test_the_benchmark_rows_of_start_up():
    row = {"command": "dhrd --help", "exit_code": 0, "seconds_min": 0.2, "seconds_median": 0.25}
    startup = {"rows": [{**row, "heavy_modules_loaded": []}], "import_dhrd_cli_seconds": import_seconds()}
    text = "\n".join(startup_markdown(startup))
    assert "| dhrd --help | 0 | 0.20 | 0.25 | neither |" in text and "`import dhrd.cli`: " in text
    assert startup_markdown({}) == []  # a benchmark run without them
