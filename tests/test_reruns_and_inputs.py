"""Reliability, round 3 (issue 26): a rerun never deletes results, predict serves any labelled file, no secret
on disk, every bad value refused before a model loads, and the smaller input defects."""

import json
import logging
import sys

import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl
from faults_support import teacher_server
from typer.testing import CliRunner

import dhrd.cli.entry_point
from dhrd.cli.commands import app
from dhrd.data.inputs import Columns, file_label_names, load_file_examples
from dhrd.data.tables import read_table
from dhrd.errors import DHRDInputError
from dhrd.inference.prediction import predict

runner = CliRunner()
WORDS = ["good", "great", "fine", "bad", "awful", "poor"]
FAKE_TOKEN = "hf_FAKEtoken1234567890abcdefXYZ"
FAKE_KEY = "sk-FAKEkey1234567890abcdefXYZ"


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output.strip()


def one_line_error(code, output, *fragments):
    """Exit 2 and one error line (progress bars of the model load may come before it on stderr)."""
    assert code == 2, output
    assert "Traceback" not in output
    lines = [part for line in output.splitlines() for part in line.split("\r") if "error" in part.lower()]
    assert len(lines) == 1 and lines[0].lstrip().startswith("error:") and output.endswith(lines[0]), output
    for fragment in fragments:
        assert fragment in lines[0], output


def reviews(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"r{k}", "text": f"the film was {WORDS[k % 6]}", "label": "pos" if k % 6 < 3 else "neg"}
        for k in range(start, start + n)
    ]


def train_args(root, backbone) -> list:
    return [
        "train", "--train-file", root / "train.jsonl", "--validation-file", root / "val.jsonl", "--backbone",
        backbone, "--output-dir", root / "run", "--no-bf16", "--epochs", "1", "--batch-size", "4", "--id-column",
        "id", "--max-length", "64",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def file_model(tiny_backbone, tmp_path_factory):
    """A tiny pooled classifier trained on a file with an id column (labels pos and neg)."""
    root = tmp_path_factory.mktemp("round3-model")
    write_jsonl(root / "train.jsonl", reviews(12))
    write_jsonl(root / "val.jsonl", reviews(6, 12))
    code, output = run(*train_args(root, tiny_backbone))
    assert code == 0, output
    return root / "run"


def loading_fails(monkeypatch):
    """Any model load from here on fails the test: what is checked must be checked before one."""

    def loads(*args, **kwargs):
        raise AssertionError("a model was loaded")

    for target in (
        "dhrd.inference.prediction.load_inference_model",
        "dhrd.inference.evaluation.load_inference_model",
        "dhrd.training.prepare.resolve_backbone",
        "dhrd.training.run.prepare_run",
        "dhrd.inference.onnx_export.load_classifier",
        "dhrd.teacher.teachers.LocalTeacher",
        "dhrd.teacher.teachers.OpenAITeacher",
    ):
        monkeypatch.setattr(target, loads)


def files_of(directory) -> dict:
    """Every file under ``directory`` with its bytes and time stamp: what a rerun must leave as it is."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


# -------------------------------------------------------------------------- 1. a finished run is left as it is
@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_a_finished_prediction_is_left_as_it_is_on_a_rerun(file_model, tmp_path, monkeypatch, suffix):
    path = write_jsonl(tmp_path / "in.jsonl", reviews(9))
    out = tmp_path / f"p.{suffix}"
    command = ["predict", "--model", file_model, "--file", path, "--output", out, "--chunk-rows", "4"]
    code, output = run(*command)
    assert code == 0, output
    before = files_of(tmp_path)
    with monkeypatch.context() as patched:
        loading_fails(patched)
        code, output = run(*command)
    assert code == 0, output
    assert " ".join(output.split()).startswith("already complete: 9 rows in") and "--restart" in output, output
    assert files_of(tmp_path) == before  # not rewritten, not touched
    code, output = run(*command, "--restart")
    assert code == 0 and "9 predictions written" in output, output
    assert read_table(out) == read_table(tmp_path / f"p.{suffix}")


def test_a_finished_training_run_is_left_as_it_is_on_a_rerun(file_model, tiny_backbone, monkeypatch, caplog):
    root = file_model.parent
    before = files_of(file_model)
    with monkeypatch.context() as patched, caplog.at_level(logging.INFO, logger="dhrd"):
        loading_fails(patched)
        code, output = run(*train_args(root, tiny_backbone))
    assert code == 0, output
    assert f"already complete: {file_model}, trained on 12 rows" in caplog.text
    assert "validation metrics" in output  # the finished run's metrics, as it printed them
    assert files_of(file_model) == before


def test_a_finished_export_is_left_as_it_is_on_a_rerun(file_model, tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    command = ["export", "--model", file_model, "--output", tmp_path / "export"]
    code, output = run(*command)
    assert code == 0, output
    before = files_of(tmp_path)
    with monkeypatch.context() as patched, caplog.at_level(logging.INFO, logger="dhrd"):
        loading_fails(patched)
        code, output = run(*command)
    assert code == 0, output
    assert "already complete" in caplog.text and "fp32:" in output
    assert files_of(tmp_path) == before
    code, output = run(*command, "--quantize", "int8")  # other files asked for: exported again
    assert code == 0 and (tmp_path / "export" / "model.int8.onnx").is_file(), output
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".export")]  # nothing set aside is left


def test_a_finished_rationale_cache_is_left_as_it_is_on_a_rerun(tmp_path, monkeypatch, caplog):
    train = write_jsonl(tmp_path / "films.jsonl", reviews(6))
    with teacher_server() as url:
        command = ["rationales", "--train-file", train, "--teacher", "m", "--base-url", url, "--output", tmp_path / "r"]
        code, output = run(*command)
        assert code == 0, output
        before = files_of(tmp_path / "r")
        with monkeypatch.context() as patched, caplog.at_level(logging.INFO, logger="dhrd"):
            loading_fails(patched)  # the teacher is never set up, let alone asked
            code, output = run(*command)
    assert code == 0, output
    assert "already complete: 5 rows" in caplog.text  # 1 of the 6 held out as the validation split
    assert files_of(tmp_path / "r") == before  # the summary of the run that made the cache too


def test_a_kill_between_the_renames_of_a_replaced_directory_loses_nothing(tmp_path, monkeypatch):
    import os

    from dhrd.runtime import atomic_directory

    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("1")
    real = os.replace

    def dies_after_the_first_rename(src, dst):
        real(src, dst)
        if str(dst).endswith(".model.old"):
            raise KeyboardInterrupt  # the process stops with the earlier directory moved aside

    monkeypatch.setattr(os, "replace", dies_after_the_first_rename)
    with pytest.raises(KeyboardInterrupt), atomic_directory(target) as tmp:
        (tmp / "weights").write_text("2")
    monkeypatch.setattr(os, "replace", real)
    assert (target / "weights").read_text() == "1"  # back in place, whole
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


# --------------------------------------------------------------------- 2, 3. predict serves any labelled file
def test_predict_serves_a_file_whose_labels_the_model_never_saw(file_model, tmp_path):
    rows = [{"text": "the film was good", "label": label} for label in ("neutral", "0", "1", "pos")]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = predict(file_model, tmp_path / "p.jsonl", str(path), progress=False)
    assert summary.rows == 4
    got = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["label"] for r in got] == ["neutral", "0", "1", "pos"]  # as the input gives them
    code, output = run("evaluate", "--model", file_model, "--file", path)  # scoring needs known labels
    one_line_error(code, output, "in.jsonl: row 1: field 'label': label 'neutral' never appears")


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_table_predictions_keep_the_label_column_when_row_1_has_none(file_model, tmp_path, suffix):
    rows = [{"id": "a", "text": "the film was good"}, {"id": "b", "text": "the film was bad", "label": "neg"}]
    rows.append({"id": "c", "text": "the film was fine", "label": " "})
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / f"p.{suffix}"
    predict(file_model, out, str(path), chunk_rows=1, progress=False)
    table = read_table(out)
    assert [r["id"] for r in table] == ["a", "b", "c"]
    assert [r["label"] or None for r in table] == [None, "neg", None]
    assert list(table[0])[:5] == ["id", "prediction", "probability_neg", "probability_pos", "label"]


# ------------------------------------------------------------------ 4, 5. rationales and labels that mislead
def _dhrd_on(tiny_backbone, tmp_path, train_rows, rationales):
    train = write_jsonl(tmp_path / "train.jsonl", train_rows)
    validation = write_jsonl(tmp_path / "val.jsonl", reviews(4, 30))
    return run(
        "train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone,
        "--output-dir", tmp_path / "run", "--no-bf16", "--epochs", "1", "--method", "dhrd", "--rationales",
        rationales,
    )  # fmt: skip


def test_a_shifted_rationale_file_without_labels_is_refused(tiny_backbone, tmp_path):
    rows = [{"text": r["text"], "label": r["label"]} for r in reviews(24)]
    # numbered from 0, without idx 0 (the teacher dropped it) and every other row: every id is a row number
    shifted = write_jsonl(tmp_path / "shifted.jsonl", [{"idx": k, "rationale": "r"} for k in range(1, 24, 2)])
    code, output = _dhrd_on(tiny_backbone, tmp_path, rows, shifted)
    one_line_error(code, output, "shifted.jsonl: row 1: field 'label': missing", "--id-column")
    other = write_jsonl(tmp_path / "other.jsonl", [{"idx": k, "label": "spam", "rationale": "r"} for k in (1, 2)])
    code, output = _dhrd_on(tiny_backbone, tmp_path, rows, other)
    one_line_error(code, output, "other.jsonl: row 1: field 'label': label 'spam' is not a training label")


def test_mixed_label_forms_are_refused_not_made_extra_classes(tiny_backbone, tmp_path):
    rows = [{"text": f"film {k}", "label": label} for k, label in enumerate(["1", "0", "positive", "negative"])]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DHRDInputError, match=r"train.jsonl: row 3: field 'label': label 'positive' is a name, but row"):
        file_label_names(path, Columns())
    named = Columns(label_map=(("0", "negative"), ("1", "positive")))
    assert file_label_names(path, named) == ("negative", "positive")
    validation = write_jsonl(tmp_path / "val.jsonl", rows)
    code, output = run("train", "--train-file", path, "--validation-file", validation, "--backbone", tiny_backbone,
                       "--output-dir", tmp_path / "run")  # fmt: skip
    one_line_error(code, output, "row 3: field 'label'", "--label-names")


# ---------------------------------------------------------------------------------------- 6. no secret on disk
def _scan(directory, secrets) -> list[str]:
    return [str(p) for p in directory.rglob("*") if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets)]


def test_no_secret_reaches_any_file_dhrd_writes(tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("DHRD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN + "env")
    secrets = [FAKE_TOKEN, FAKE_KEY, FAKE_TOKEN + "env"]
    write_jsonl(tmp_path / "train.jsonl", reviews(8))
    write_jsonl(tmp_path / "val.jsonl", reviews(4, 8))
    command = [*train_args(tmp_path, tiny_backbone), "--hub-token", FAKE_TOKEN, "--report-to", "none"]
    monkeypatch.setattr(sys, "argv", ["dhrd", *map(str, command)])  # as the dhrd command: provenance records it
    code, output = run(*command)
    assert code == 0, output
    assert list((tmp_path / "run").rglob("training_args.bin")), "no checkpoint was written"
    assert _scan(tmp_path / "run", secrets) == []  # checkpoints included
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["provenance"]["command"]
    assert "--hub-token '<secret>'" in recorded
    with teacher_server() as url:  # the teacher's key is read from the environment
        asked = ["rationales", "--train-file", tmp_path / "train.jsonl", "--teacher", "m", "--base-url", url,
                 "--output", tmp_path / "rationales"]  # fmt: skip
        monkeypatch.setattr(sys, "argv", ["dhrd", *map(str, asked)])
        code, output = run(*asked)
    assert code == 0, output
    summary = next((tmp_path / "rationales").rglob("train.summary.json"))
    assert json.loads(summary.read_text())["provenance"]["command"].startswith("dhrd rationales --train-file")

    def breaks(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("dhrd.training.run.train", breaks)  # an unexpected error saves its traceback and command line
    monkeypatch.setattr(sys, "argv", ["dhrd", *map(str, command), f"--hub_token={FAKE_TOKEN}"])
    with pytest.raises(SystemExit) as stopped:
        dhrd.cli.entry_point.main()
    assert stopped.value.code == 1
    saved = list((tmp_path / "cache" / "errors").glob("*.txt"))
    assert len(saved) == 1 and "--hub_token=<secret>" in saved[0].read_text()
    assert _scan(tmp_path, secrets) == []


# ------------------------------------------------------------------ 7. bad values refused before a model loads
BAD = [
    (["train", "--batch-size", "-4"], "--batch-size must be at least 1, not -4"),
    (["train", "--epochs", "0"], "--epochs must be greater than 0"),
    (["train", "--lr=-1e-4"], "--lr must be at least 0"),
    (["train", "--lora-dropout", "1.5"], "--lora-dropout must be at least 0 and below 1"),
    (["train", "--max-train-examples", "0"], "--max-train-examples must be at least 1"),
    (["train", "--rationales", "{tmp}/nope.jsonl", "--method", "dhrd"], "rationale file not found"),
    (["train", "--data-dir", "{tmp}/train.jsonl"], "--data-dir {tmp}/train.jsonl: a file, not a directory"),
    (["train", "--train-file", "{tmp}"], "--train-file {tmp}: a directory, not a file"),
    (["predict", "--batch-size", "-4"], "--batch-size must be at least 1, not -4"),
    (["predict", "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    (["predict", "--chunk-rows", "0"], "--chunk-rows must be at least 1"),
    (["predict", "--max-length", "2"], "--max-length must be at least 8 tokens"),
    (["predict", "--output", "{tmp}"], "--output {tmp}: a directory, not a file"),
    (["predict", "--file", "{tmp}"], "--file {tmp}: a directory, not a file"),
    (["predict", "--file", "{tmp}/nope.csv"], "--file {tmp}/nope.csv: file not found"),
    (["predict", "--split", "../../x", "--task", "cb"], "--split '../../x': a split's name"),
    (["evaluate", "--split", "../../x"], "--split '../../x': a split's name"),
    (["evaluate", "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    (["evaluate", "--max-examples", "0"], "--max-examples must be at least 1"),
    (["rationales", "--concurrency", "0"], "--concurrency must be at least 1"),
    (["rationales", "--timeout", "0"], "--timeout must be greater than 0"),
    (["rationales", "--max-new-tokens", "-1"], "--max-new-tokens must be at least 1"),
    (["rationales", "--template", "{tmp}/nope.txt"], "--template {tmp}/nope.txt: file not found"),
    (["explain", "--max-new-tokens", "0", "--task", "cb"], "--max-new-tokens must be at least 1"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[" ".join(args) for args, _ in BAD])
def test_bad_numbers_and_paths_are_refused_before_any_model_loads(
    file_model, tiny_backbone, tmp_path, monkeypatch, extra, message
):
    write_jsonl(tmp_path / "train.jsonl", reviews(6))
    write_jsonl(tmp_path / "val.jsonl", reviews(4, 6))
    command, *options = [word.replace("{tmp}", str(tmp_path)) for word in extra]
    base = {
        "train": [*train_args(tmp_path, tiny_backbone)[1:]],
        "predict": ["--model", file_model, "--file", tmp_path / "val.jsonl", "--output", tmp_path / "p.jsonl"],
        "evaluate": ["--model", file_model, "--file", tmp_path / "val.jsonl"],
        "rationales": ["--train-file", tmp_path / "train.jsonl", "--teacher", "m", "--base-url", "http://127.0.0.1:9"],
        "explain": ["--model", file_model],
    }[command]
    loading_fails(monkeypatch)
    code, output = run(command, *base, *options)
    one_line_error(code, output, message.replace("{tmp}", str(tmp_path)))
    assert not (tmp_path / "run").exists() and not (tmp_path / "p.jsonl.progress.json").exists()


# --------------------------------------------------------------------------------------------- 8. the smaller
def test_the_encoding_hint_names_cp1252_first_and_a_utf16_file_as_such(tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_bytes("text,label\n\u201cfine\u201d \u20ac5,pos\n".encode("cp1252"))
    with pytest.raises(DHRDInputError, match=r"sheet.csv: row 1: .* \(for example cp1252, what spreadsheets export"):
        read_table(path)
    assert read_table(path, "cp1252") == [{"text": "\u201cfine\u201d \u20ac5", "label": "pos"}]
    wide = tmp_path / "wide.csv"
    wide.write_bytes("text,label\nfine,pos\n".encode("utf-16"))  # with its byte-order mark
    with pytest.raises(DHRDInputError, match=r"wide.csv: header: .* starts with a UTF-16 byte-order mark: pass "
                                             r"--encoding utf-16"):  # fmt: skip
        read_table(wide)
    assert read_table(wide, "utf-16") == [{"text": "fine", "label": "pos"}]


def test_row_numbers_count_data_rows_not_blank_lines(file_model, tmp_path):
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "good"}\n\n{"text": "bad"}\n   \n{"text": "fine"}\n')
    csv = tmp_path / "in.csv"
    csv.write_text("text,label\ngood,pos\n\nbad,neg\n\nfine,pos\n")
    for path in (jsonl, csv):
        examples = load_file_examples(path, Columns(), ("neg", "pos"), require_labels=False)
        assert [e.source_idx for e in examples] == [1, 2, 3], path
    predict(file_model, tmp_path / "p.jsonl", str(jsonl), progress=False)
    assert [json.loads(line)["id"] for line in (tmp_path / "p.jsonl").read_text().splitlines()] == [1, 2, 3]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "good"}\n\n{"text": \n')
    with pytest.raises(DHRDInputError, match=r"broken.jsonl: row 2 \(line 3\): unreadable JSON"):
        read_table(broken)


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_an_empty_input_gets_an_empty_output(file_model, tmp_path, suffix):
    path = tmp_path / "empty.csv"
    path.write_text("id,text\n")
    out = tmp_path / f"p.{suffix}"
    code, output = run("predict", "--model", file_model, "--file", path, "--output", out)
    assert code == 0 and f"0 predictions written to {out}" in " ".join(output.split()), output
    assert out.is_file() and read_table(out) == []
    if suffix == "csv":
        assert out.read_text().startswith("id,prediction,probability_neg,probability_pos,label")
    if suffix == "parquet":
        assert pq.read_table(out).num_rows == 0
    code, output = run("predict", "--model", file_model, "--file", path, "--output", out)
    assert code == 0 and output.startswith("already complete: 0 rows"), output


def test_training_names_the_row_that_is_too_long(tiny_backbone, tmp_path):
    rows = reviews(6)
    rows[3]["text"] = "the film was good " * 40
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "val.jsonl", reviews(4, 6))
    code, output = run(*[w if w != "64" else "32" for w in train_args(tmp_path, tiny_backbone)])
    one_line_error(code, output, "train split: id 'r3': ", "1 of 6 inputs are longer than --max-length 32")
    assert not (tmp_path / "run" / "model").exists()


def test_predict_refuses_duplicate_ids_and_a_failure_leaves_no_progress_record(file_model, tmp_path):
    rows = reviews(3) + [{**reviews(1)[0], "text": "again"}]
    path = write_jsonl(tmp_path / "twice.jsonl", rows)
    out = tmp_path / "p.jsonl"
    code, output = run("predict", "--model", file_model, "--file", path, "--output", out)
    one_line_error(code, output, "twice.jsonl: row 4: field 'id': id 'r0' is also the id of row 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twice.jsonl"]  # no output, no progress record
    # a repeat in a later chunk, after a resume: the ids written before still count
    code, output = run("predict", "--model", file_model, "--file", path, "--output", out, "--chunk-rows", "2")
    one_line_error(code, output, "row 4: field 'id': id 'r0' is also the id of row 1")
    code, output = run("predict", "--model", file_model, "--file", path, "--output", out, "--chunk-rows", "2")
    one_line_error(code, output, "row 4: field 'id': id 'r0' is also the id of row 1")
    assert len(out.read_text().splitlines()) == 2  # the first chunk's rows, kept for when the file is fixed


def test_a_directory_given_as_a_file_is_named_as_one(tmp_path):
    (tmp_path / "data.csv").mkdir()
    with pytest.raises(DHRDInputError, match=r"data.csv: a directory, not a file"):
        read_table(tmp_path / "data.csv")
    with pytest.raises(DHRDInputError, match=r"nope.csv: file not found"):
        read_table(tmp_path / "nope.csv")
