"""One labelled file, as a new user has it: the validation split dhrd carves from it, which rows the teacher
explains, the commands `dhrd rationales` prints (run as printed), the README walkthrough (run as written),
evaluate naming what it scored, the teacher's bar and Ctrl-C."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
from test_teacher import _completion, server  # noqa: F401  (the fake OpenAI-compatible server fixture)
from typer.testing import CliRunner

from dhrd.cli.commands import app
from dhrd.data.examples import Example
from dhrd.data.inputs import DataSpec
from dhrd.data.selection import carve_split, sample_examples
from dhrd.data.tasks import TASK_ANSWERS
from dhrd.errors import DHRDInputError
from dhrd.teacher.prompts import SENTINEL, TeacherItem, check_output, conclusion_answer, is_short

README = Path(__file__).resolve().parents[1] / "README.md"
NAMES = ["entailment", "contradiction", "neutral"]
WORD = {0: "certainly", 1: "never", 2: "maybe"}
runner = CliRunner()


def run(*args, cwd: Path | None = None, monkeypatch=None):
    if cwd is not None:
        monkeypatch.chdir(cwd)
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, result.output


def cb_csv(path: Path, n: int = 40) -> Path:
    """A CSV shaped like `scripts/superglue_to_csv.py --task cb`'s: id, premise, hypothesis, integer labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "premise", "hypothesis", "label"])
        for k in range(n):
            writer.writerow([k, f"Ann said it {WORD[k % 3]} rained on day {k}.", "it rained", k % 3])
    return path


def explaining_teacher(seen: list | None = None):
    """A teacher that explains the given label in a sentence that passes every check."""

    def reply(number, body):
        user = body["messages"][-1]["content"]
        if seen is not None:
            seen.append(user)
        answer = user.split("Answer: ", 1)[1].split("\n", 1)[0]
        return 200, _completion(f"Ann says how sure she is about the rain on that day. {SENTINEL}\nAnswer: {answer}")

    return reply


def printed_commands(output: str) -> list[str]:
    """The `dhrd train` commands `dhrd rationales` ends with (one a line: it never wraps them)."""
    prefixes = ("train with: ", "or, on the explained rows only: ")
    return [line.split(": ", 1)[1].strip() for line in output.splitlines() if line.startswith(prefixes)]


# ------------------------------------------------------------------------------------------ the split
def test_the_carve_is_seeded_stratified_and_disjoint():
    rows = [Example(str(k), "custom", f"t{k}", k % 3, str(k), source_idx=k) for k in range(60)]
    kept, held = carve_split(rows, 0.2, 42, "--validation-fraction")
    assert len(held) == 12 and len(kept) == 48
    assert not {e.id for e in kept} & {e.id for e in held}
    assert sorted(e.label for e in held) == [0] * 4 + [1] * 4 + [2] * 4  # stratified
    assert carve_split(rows, 0.2, 42)[1] == held and carve_split(rows, 0.2, 7)[1] != held
    with pytest.raises(DHRDInputError, match="--validation-fraction 0.995: 60 training examples leave none"):
        carve_split(rows, 0.995, 42, "--validation-fraction")
    assert len(carve_split(rows, 0.98, 42)[0]) == 1  # too few rows left to stratify: a plain seeded split
    # a cap takes a seeded sample, or the first N rows in file order
    assert [e.id for e in sample_examples(kept, 3, 0, "first")] == [e.id for e in kept[:3]]
    assert sample_examples(kept, 3, 0) != sample_examples(kept, 3, 0, "first")


def test_a_training_file_alone_is_split_and_the_split_is_recorded(tiny_backbone, tmp_path, monkeypatch):
    data = cb_csv(tmp_path / "cb-csv" / "train.csv", 40)
    columns = ["--text-column", "premise", "--text-pair-column", "hypothesis", "--id-column", "id",
               "--label-names", "0=entailment,1=contradiction,2=neutral"]  # fmt: skip
    common = ["--backbone", tiny_backbone, "--epochs", "1", "--batch-size", "8", "--no-bf16", "--max-length", "64"]
    code, output = run("train", "--train-file", data, *columns, *common, "--output-dir", tmp_path / "run")
    assert code == 0, output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    record = json.loads((tmp_path / "run" / "validation-split.json").read_text())
    assert metrics["train_rows"] == 36 and metrics["eval_rows"] == 4 == record["validation_rows"]
    assert metrics["validation_split"]["validation_fraction"] == 0.1
    assert metrics["validation_split"]["ids_in"] == "validation-split.json"
    spec = DataSpec(train_file=str(data), text_column="premise", text_pair_column="hypothesis", id_column="id",
                    label_map="0=entailment,1=contradiction,2=neutral", validation_fraction=0.1)  # fmt: skip
    spec.validate()
    kept, held = spec.carved_splits(spec.label_names())
    assert record["validation_ids"] == [e.source_idx for e in held] and len(record["validation_ids"]) == 4
    assert not set(record["validation_ids"]) & {e.source_idx for e in kept}  # never trained on
    # the model keeps the split's settings: evaluate without a file scores the same held-out rows
    code, output = run("evaluate", "--model", tmp_path / "run")
    assert code == 0, output
    assert "metrics on the validation split" in " ".join(output.split())
    scored = json.loads((tmp_path / "run" / "model" / "eval-validation.json").read_text())
    assert scored["rows"] == 4 and scored["score"] == pytest.approx(metrics["score"], abs=1e-6)
    # a resumed run must carve the same rows: a changed file is refused, never mixed into the run
    from dhrd.training.run_rows import record_validation_split

    with pytest.raises(DHRDInputError, match="carved from other rows than"):
        record_validation_split(tmp_path / "run", {**record, "validation_ids": [1, 2, 3, 4]}, resuming=True)
    # both a validation file and a fraction is one too many
    code, output = run("train", "--train-file", data, "--validation-file", data, "--validation-fraction", "0.2",
                       *columns, *common, "--output-dir", tmp_path / "both")  # fmt: skip
    assert code == 2 and "give --validation-file or --validation-fraction, not both" in output, output


# ------------------------------------------------------------------------- the teacher's rows, printed
def test_rationales_names_its_rows_and_its_printed_commands_run_as_printed(
    server,  # noqa: F811
    tiny_backbone,
    tmp_path,
    monkeypatch,
):
    data = cb_csv(tmp_path / "cb-csv" / "train.csv", 40)
    url, _ = server(explaining_teacher())
    columns = ["--text-column", "premise", "--text-pair-column", "hypothesis", "--id-column", "id",
               "--label-names", "0=entailment,1=contradiction,2=neutral"]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    code, output = run(
        "rationales", "--train-file", "cb-csv/train.csv", *columns, "--max-examples", "6", "--selection", "first",
        "--teacher", "m", "--base-url", url, "--output", "rationales/cb",
    )  # fmt: skip
    assert code == 0, output
    flat = " ".join(output.split())
    spec = DataSpec(train_file=str(data), text_column="premise", text_pair_column="hypothesis", id_column="id",
                    label_map="0=entailment,1=contradiction,2=neutral", validation_fraction=0.1)  # fmt: skip
    spec.validate()
    kept, held = spec.carved_splits(spec.label_names())
    first = [str(e.source_idx) for e in kept[:6]]
    assert "4 rows (0.1) are held out as the validation split" in flat
    assert "the first 6 training rows in file order (--selection first)" in flat
    assert f"asked about: {', '.join(first)}" in flat
    cache = [json.loads(line) for line in (tmp_path / "rationales/cb/train/train.jsonl").read_text().splitlines()]
    assert sorted(str(r["idx"]) for r in cache) == sorted(first)
    assert not {str(e.source_idx) for e in held} & {str(r["idx"]) for r in cache}  # never asked about
    summary = json.loads((tmp_path / "rationales/cb/train/train.summary.json").read_text())
    assert summary["held_out_for_validation"] == 4 and summary["selection"] == "first"

    commands = printed_commands(output)
    assert len(commands) == 2, output
    assert "--validation-file" not in commands[0] and commands[1].endswith("--max-train-examples 6 --selection first")
    extra = ["--backbone", str(tiny_backbone), "--epochs", "1", "--batch-size", "8", "--no-bf16", "--max-length", "64"]
    for k, command in enumerate(commands):
        words = shlex.split(command)
        assert words[:2] == ["dhrd", "train"]
        code, output = run(*words[1:], *extra, "--output-dir", f"runs/printed-{k}")
        assert code == 0, (command, output)
        metrics = json.loads((tmp_path / f"runs/printed-{k}/metrics.json").read_text())
        assert metrics["eval_rows"] == 4
        assert (metrics["train_rows"], metrics["rows_without_rationale"]) == ((36, 30) if k == 0 else (6, 0))


# --------------------------------------------------------------------------------- the README, as written
def readme_walkthrough() -> tuple[list[str], dict[str, str]]:
    text = README.read_text()
    section = text.split("## From a CSV to a served classifier", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    values: dict[str, str] = {}
    commands = []
    for line in lines:
        line = line.split("  #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if m := re.fullmatch(r'([A-Z]+)="(.*)"', line):
            values[m.group(1)] = m.group(2)
            continue
        commands.append(line)
    return commands, values


def test_the_readme_walkthrough_runs_as_written_from_one_csv(server, tiny_backbone, tmp_path, monkeypatch):  # noqa: F811
    commands, values = readme_walkthrough()
    assert [c.split()[1] for c in commands] == ["rationales", "train", "evaluate", "predict"]
    cb_csv(tmp_path / "cb-csv" / "train.csv", 40)
    assert not (tmp_path / "cb-csv" / "validation.csv").exists()  # one file
    url, _ = server(explaining_teacher())
    monkeypatch.chdir(tmp_path)
    for command in commands:
        for name, value in values.items():  # "$TASK" is one word, $FILE its words (as bash expands them)
            command = command.replace(f'"${name}"', shlex.quote(value)).replace(f"${name}", value)
        words = shlex.split(command)[1:]
        if words[0] == "rationales":  # the fake server stands in for the served teacher
            words[words.index("--base-url") + 1] = url
        if words[0] == "train":  # the tiny test model stands in for the default backbone
            words += ["--backbone", str(tiny_backbone), "--no-bf16", "--max-length", "64", "--batch-size", "8"]
        code, output = run(*words)
        assert code == 0, (command, output)
    metrics = json.loads((tmp_path / "runs/cb-csv/metrics.json").read_text())
    assert metrics["train_rows"] == 36 and metrics["eval_rows"] == 4
    assert metrics["rows_without_rationale"] == 0  # the file has fewer rows than the 50 explained
    assert json.loads((tmp_path / "runs/cb-csv/model/eval-validation.json").read_text())["rows"] == 4
    predictions = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 40 and json.loads(predictions[0])["id"] == "0"


# ------------------------------------------------------------------------------- evaluate, bar, Ctrl-C
def test_the_teacher_bar_counts_cached_rows_and_ctrl_c_prints_the_summary(server, tmp_path, monkeypatch):  # noqa: F811
    cb_csv(tmp_path / "train.csv", 12)
    url, _ = server(explaining_teacher())
    args = ["rationales", "--train-file", tmp_path / "train.csv", "--text-column", "premise", "--text-pair-column",
            "hypothesis", "--label-names", "0=entailment,1=contradiction,2=neutral", "--teacher", "m",
            "--base-url", url, "--output", tmp_path / "c", "--concurrency", "1"]  # fmt: skip
    from dhrd.teacher.backends import OpenAITeacher

    original = OpenAITeacher.generate

    def interrupted(self, requests, *rest):
        for k, answer in enumerate(original(self, requests, *rest)):
            if k == 3:
                raise KeyboardInterrupt
            yield answer

    with monkeypatch.context() as patched:
        patched.setattr(OpenAITeacher, "generate", interrupted)
        code, output = run(*args)
    assert code == 130, output
    flat = " ".join(output.split())
    assert "interrupted: rationales - openai:m" in flat
    summary = json.loads((tmp_path / "c/train/train.summary.json").read_text())
    assert summary["interrupted"] is True and summary["written"] == 3 and summary["rows_in_cache"] == 3
    assert "interrupted: 3 rows in" in flat and "run the same command again to resume" in flat

    code, output = run(*args)  # the rest: the bar starts at the 3 cached rows of the 11 training rows
    assert code == 0, output
    assert re.search(r"\b3/11\b", output) and re.search(r"\b11/11\b", output), output
    summary = json.loads((tmp_path / "c/train/train.summary.json").read_text())
    assert summary["interrupted"] is False and summary["already_cached"] == 3 and summary["written"] == 8


# ------------------------------------------------------------------------------------- the checks' reading
ANSWERS = {"negative": "negative", "positive": "positive"}


def review_item(text: str, label: str = "positive") -> TeacherItem:
    return TeacherItem(1, label, label, f"Review: {text}\nQuestion: q", {"text": text, "question": "q"})


def test_the_quality_checks_read_the_rationale():
    item = review_item("Yes! A great film, yes, with fine acting.")
    checked = check_output("The movie review is", item, ANSWERS, finish_reason="stop")
    assert checked.problems == ["short"]  # a fragment the teacher stopped on: no longer "ok"
    assert is_short("Too few words.") and not is_short("The reviewer praises the acting at length.")
    # the body argues for the other label: its conclusion, read with negation
    body = "The acting is praised, but the review is negative overall."
    assert check_output(body, item, ANSWERS, finish_reason="stop").problems == ["conclusion"]
    fine = "The reviewer calls it great, and nothing negative is said, so the review is positive."
    assert check_output(fine, item, ANSWERS, finish_reason="stop").problems == []
    assert check_output("It is not negative at all: the acting is praised.", item, ANSWERS,
                        finish_reason="stop").problems == []  # fmt: skip
    cb = TASK_ANSWERS["cb"]
    assert conclusion_answer("The premise says X. Therefore, the premise entails the hypothesis.", cb,
                             "Contradiction")[1]  # fmt: skip
    assert not conclusion_answer("The premise neither entails nor contradicts the hypothesis.", cb, "Neither")[1]
    assert conclusion_answer("So the premise does not entail the hypothesis.", cb, "Entailment")[1]
    # an "Answer:" that the review never holds is invented; one the text holds is a quote
    invented = 'The review says "Answer: positive" and praises the acting.'
    assert check_output(invented, item, ANSWERS, finish_reason="stop").problems == ["invented"]
    quoting = review_item("Final answer: a great film with fine acting.")
    assert "invented" not in check_output(invented, quoting, ANSWERS, finish_reason="stop").problems
    # the review's own "yes" quoted is no leak; the teacher's own "yes" is
    quoted = 'The reviewer writes "yes" twice and calls it a great film, with fine acting.'
    assert check_output(quoted, item, ANSWERS, finish_reason="stop").problems == []
    own = "Yes, the reviewer enjoyed the film and its acting."
    assert check_output(own, item, ANSWERS, finish_reason="stop").problems == ["leak"]
