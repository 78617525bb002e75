"""Every failure of the real ``dhrd`` entry point is one line on stderr: bad options exit with 2, bugs with 1
and their traceback saved to a file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import dhrd.cli.entry_point
import dhrd.inference.evaluation


def dhrd_command(*args, columns=60):
    env = {**os.environ, "COLUMNS": str(columns)}  # a narrow terminal must not wrap the line either
    env.pop("DHRD_TRACEBACK", None)
    done = subprocess.run(
        [sys.executable, "-m", "dhrd", *map(str, args)], capture_output=True, text=True, timeout=120, env=env
    )
    return done.returncode, done.stdout, done.stderr


def assert_one_line(stderr, *fragments):
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["train", "--lr", "abc"], ["--lr", "invalid float value: 'abc'", "--help"]),
        (["train", "--no-such-option"], ["no such option: --no-such-option", "--help"]),
        (["train", "--head", "cnn"], ["--head", "invalid choice: 'cnn'", "--help"]),
        (["evaluate"], ["Missing option '--model'"]),
        (["no-such-command"], ["No such command 'no-such-command'"]),
    ],
)
def test_parse_errors_are_one_line_with_exit_code_2(args, fragments):
    code, stdout, stderr = dhrd_command(*args)
    assert code == 2
    assert_one_line(stderr, *fragments)
    assert "Usage" not in stdout + stderr and "╭" not in stdout + stderr


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"]])
def test_help_still_works(args):
    code, stdout, stderr = dhrd_command(*args, columns=200)
    assert code == 0, stderr
    assert "usage" in stdout.lower()  # train's help is argparse's (generated from DHRDTrainingArguments)
    assert args == ["--help"] or "--trust-remote-code" in stdout


def test_bad_input_is_still_one_line(tmp_path):
    code, _, stderr = dhrd_command("evaluate", "--model", tmp_path / "nowhere")
    assert code == 2
    assert_one_line(stderr, "nowhere: no trained model here")


def run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["dhrd", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        dhrd.cli.entry_point.main()
    return exit_info.value.code, capsys.readouterr()


def _bug(*args, **kwargs):
    raise RuntimeError("something broke\nsecond line of the message")


def test_unexpected_error_is_one_line_and_its_traceback_is_saved(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DHRD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DHRD_TRACEBACK", raising=False)
    monkeypatch.setattr(dhrd.inference.evaluation, "evaluate", _bug)
    code, captured = run_main(monkeypatch, capsys, "evaluate", "--model", tmp_path, "--output", tmp_path / "m.json")
    assert code == 1
    assert_one_line(captured.err, "error: unexpected RuntimeError: something broke (full traceback saved to ")
    assert "second line" not in captured.err
    saved = list((tmp_path / "cache" / "errors").glob("*.txt"))
    assert len(saved) == 1 and str(saved[0]) in captured.err
    text = saved[0].read_text()
    assert "Traceback" in text and "RuntimeError: something broke" in text and "_bug" in text
    assert text.startswith("$ dhrd evaluate --model ")


def test_unexpected_error_when_the_traceback_cannot_be_saved(monkeypatch, capsys, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("DHRD_CACHE", str(tmp_path / "a-file"))  # no folder can be made under a file
    monkeypatch.delenv("DHRD_TRACEBACK", raising=False)
    monkeypatch.setattr(dhrd.inference.evaluation, "evaluate", _bug)
    code, captured = run_main(monkeypatch, capsys, "evaluate", "--model", tmp_path, "--output", tmp_path / "m.json")
    assert code == 1
    assert_one_line(captured.err, "unexpected RuntimeError: something broke", "in _bug", "could not be saved")


def test_developers_can_ask_for_the_traceback(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DHRD_TRACEBACK", "1")
    monkeypatch.setattr(dhrd.inference.evaluation, "evaluate", _bug)
    monkeypatch.setattr(sys, "argv", ["dhrd", "evaluate", "--model", str(tmp_path), "--output", str(tmp_path / "m")])
    with pytest.raises(RuntimeError, match="something broke"):
        dhrd.cli.entry_point.main()


def test_an_error_naming_user_text_prints_it_as_written(tmp_path):
    """Rich turned ':x:' in an error line into an emoji (f1:x: became 'f1❌')."""
    code, _, stderr = dhrd_command("evaluate", "--model", tmp_path / "f1:x:")
    assert code == 2 and "f1:x:" in stderr and "❌" not in stderr


def test_messages_go_to_the_stderr_of_the_moment_not_to_a_closed_one(monkeypatch):
    """CI: a test that ran ``main()`` under capsys left dhrd's handler on a closed stream; a later command's
    information line then printed a 'Logging error' traceback into a one-line error."""
    import io
    import logging

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    dhrd.cli.entry_point.show_messages()
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("dhrd.test").info("rows asked about: %s", "all")
    assert second.getvalue() == "rows asked about: all\n"
