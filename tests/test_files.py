"""The user's own files, round 2: every encoding, rows keyed by the user's ids, rationales from a column or
a file that must line up, inputs too long for memory, and streaming, resumable prediction."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import write_jsonl
from typer.testing import CliRunner

from dhrd.cli.commands import app
from dhrd.data.inputs import Columns, load_file_examples
from dhrd.data.rationales import read_rationales
from dhrd.data.tables import iter_table, read_table
from dhrd.errors import DHRDInputError
from dhrd.inference.evaluation import token_batches
from dhrd.inference.prediction import predict
from dhrd.inference.prediction_sink import PredictionSink
from dhrd.teacher.prompts import load_template

runner = CliRunner()
WORDS = ["good", "great", "fine", "bad", "awful", "poor"]


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


# ------------------------------------------------------------------------------------------- encodings
def test_a_utf8_byte_order_mark_is_accepted_in_every_reader(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "d.jsonl").write_bytes(bom + b'{"text": "caf\xc3\xa9", "label": "pos"}\n')
    (tmp_path / "d.csv").write_bytes(bom + b"text,label\ncaf\xc3\xa9,pos\n")
    (tmp_path / "d.tsv").write_bytes(bom + b"text\tlabel\ncaf\xc3\xa9\tpos\n")
    for name in ("d.jsonl", "d.csv", "d.tsv"):
        assert read_table(tmp_path / name) == [{"text": "café", "label": "pos"}], name
    rationales = tmp_path / "r.jsonl"
    rationales.write_bytes(bom + b'{"idx": 1, "rationale": "because"}\n')
    assert read_rationales(rationales) == {"1": "because"}
    template = tmp_path / "t.txt"
    template.write_bytes(bom + b"system: be brief\r\n---\r\nExplain {input}. Answer: {answer}\r\n")
    loaded = load_template(template, "label")
    assert loaded.system == "be brief" and loaded.user == "Explain {input}. Answer: {answer}"


def test_an_undecodable_byte_names_the_file_row_and_byte_offset(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\nfine,pos\ncaf\xe9,neg\n")  # Latin-1: one byte for the accent
    with pytest.raises(DHRDInputError, match=r"latin.csv: row 2: byte 0xe9 at byte offset 23 .* --encoding"):
        read_table(path)
    assert read_table(path, "latin-1")[1] == {"text": "café", "label": "neg"}
    jsonl = tmp_path / "latin.jsonl"
    jsonl.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DHRDInputError, match=r"latin.jsonl: row 2: byte 0xe9 at byte offset 28"):
        read_table(jsonl)
    with pytest.raises(DHRDInputError, match="unknown --encoding 'klingon'"):
        read_table(path, "klingon")


def test_cli_train_on_latin1_is_one_line_then_trains_with_encoding(tiny_backbone, tmp_path):
    train, validation = tmp_path / "train.csv", tmp_path / "val.csv"
    train.write_bytes(b"text,label\nthe good caf\xe9,pos\nthe bad caf\xe9,neg\n")
    validation.write_bytes(b"text,label\nfine caf\xe9,pos\n")
    common = ["train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone]
    common += ["--output-dir", tmp_path / "run", "--no-bf16", "--epochs", "1"]
    one_line_error(*run(*common), "train.csv: row 1: byte 0xe9", "--encoding")
    code, output = run(*common, "--encoding", "cp1252")
    assert code == 0, output


# ----------------------------------------------------------------------------------------------- ids
def test_rows_are_keyed_by_the_id_column_or_their_1_based_number(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", reviews(3))
    labels = ("neg", "pos")
    by_number = load_file_examples(path, Columns(), labels)
    assert [e.source_idx for e in by_number] == [1, 2, 3] and by_number[0].id == "1"
    by_id = load_file_examples(path, Columns(id="id"), labels)
    assert [e.source_idx for e in by_id] == ["r0", "r1", "r2"]
    twice = write_jsonl(tmp_path / "twice.jsonl", reviews(2) + reviews(1))
    with pytest.raises(DHRDInputError, match=r"twice.jsonl: row 3: field 'id': id 'r0' is also the id of row 1"):
        load_file_examples(twice, Columns(id="id"), labels)
    blank = write_jsonl(tmp_path / "blank.jsonl", [{**reviews(1)[0], "id": " "}])
    with pytest.raises(DHRDInputError, match=r"blank.jsonl: row 1: field 'id': empty id"):
        load_file_examples(blank, Columns(id="id"), labels)


def _dhrd_on_files(tiny_backbone, tmp_path, *extra):
    train = write_jsonl(tmp_path / "train.jsonl", reviews(8))
    validation = write_jsonl(tmp_path / "val.jsonl", reviews(4, 8))
    return run(
        "train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone,
        "--output-dir", tmp_path / "run", "--no-bf16", "--epochs", "1", "--batch-size", "4", "--method", "dhrd",
        *extra,
    )  # fmt: skip


def test_rationales_from_a_column_of_the_training_file(tiny_backbone, tmp_path):
    rows = reviews(8)
    for k, row in enumerate(rows):
        row["why"] = "" if k == 3 else f"it says {WORDS[k % 6]}"
    write_jsonl(tmp_path / "train.jsonl", rows)
    train = tmp_path / "train.jsonl"
    validation = write_jsonl(tmp_path / "val.jsonl", reviews(4, 8))
    code, output = run(
        "train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone,
        "--output-dir", tmp_path / "run", "--no-bf16", "--epochs", "1", "--batch-size", "4", "--method", "dhrd",
        "--rationale-column", "why",
    )  # fmt: skip
    assert code == 0, output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["rows_without_rationale"] == 1  # the empty cell trains the classification head only
    code, output = run(
        "train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone,
        "--output-dir", tmp_path / "run2", "--no-bf16", "--method", "dhrd", "--rationale-column", "because",
    )  # fmt: skip
    one_line_error(code, output, "train.jsonl: row 1: field 'because': missing column")


def test_a_rationale_file_that_does_not_line_up_is_refused(tiny_backbone, tmp_path):
    rows = reviews(8)
    zero_based = write_jsonl(
        tmp_path / "zero.jsonl", [{"idx": k, "rationale": f"about row {k + 1}"} for k in range(8)]
    )  # numbered from 0, while rows are numbered from 1
    one_line_error(
        *_dhrd_on_files(tiny_backbone, tmp_path, "--rationales", zero_based),
        "zero.jsonl: row 1: field 'idx': id '0' is not in the training data",
        "1-based row number",
    )
    # keyed by the right range but shifted by one: caught by the labels the file carries
    shifted = write_jsonl(
        tmp_path / "shifted.jsonl",
        [{"idx": k + 1, "label": rows[(k + 1) % 8]["label"], "rationale": "r"} for k in range(8)],
    )
    one_line_error(
        *_dhrd_on_files(tiny_backbone, tmp_path, "--rationales", shifted),
        "shifted.jsonl: row 3: field 'label': says id '3' has label 'neg'",
    )
    by_id = write_jsonl(tmp_path / "ids.jsonl", [{"idx": f"r{k}", "rationale": "r"} for k in range(8)])
    one_line_error(
        *_dhrd_on_files(tiny_backbone, tmp_path, "--rationales", by_id), "ids.jsonl: row 1: field 'idx': id 'r0'"
    )
    code, output = _dhrd_on_files(tiny_backbone, tmp_path, "--rationales", by_id, "--id-column", "id")
    assert code == 0, output


def test_teacher_import_keys_a_file_by_its_id_column(tmp_path):
    from dhrd.teacher.teachers import make_rationales

    train = write_jsonl(tmp_path / "train.jsonl", reviews(4))
    mine = tmp_path / "mine.csv"
    mine.write_text("id,rationale\nr2,second\nr0,first\n")
    path, summary = make_rationales(
        train_file=train, columns=Columns(id="id"), import_file=mine, output=tmp_path / "c", progress=False
    )
    assert read_rationales(path) == {"r2": "second", "r0": "first"} and summary["written"] == 2
    numbered = tmp_path / "numbered.csv"
    numbered.write_text("idx,rationale\n0,first\n")
    with pytest.raises(DHRDInputError, match=r"numbered.csv: row 1: field 'idx': id '0' is not in the data"):
        make_rationales(train_file=train, import_file=numbered, output=tmp_path / "d", progress=False)


# ------------------------------------------------------------------------------------- bounded memory
def test_token_batches_bound_rows_and_padded_tokens():
    lengths = [5, 300, 40, 41, 7, 512, 3, 100] * 5
    batches = token_batches(lengths, batch_size=8, max_batch_tokens=600)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[r] for r in batch)
        assert len(batch) <= 8 and (len(batch) == 1 or len(batch) * width <= 600)


@pytest.fixture(scope="module")
def file_model(tiny_backbone, tmp_path_factory):
    """A tiny pooled classifier trained on a file with an id column."""
    root = tmp_path_factory.mktemp("file-model")
    train = write_jsonl(root / "train.jsonl", reviews(12))
    validation = write_jsonl(root / "val.jsonl", reviews(6, 12))
    code, output = run(
        "train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone,
        "--output-dir", root / "run", "--no-bf16", "--epochs", "1", "--batch-size", "4", "--id-column", "id",
        "--max-length", "64",
    )  # fmt: skip
    assert code == 0, output
    return root / "run"


def test_an_input_too_long_is_refused_before_any_batch_runs(file_model, tmp_path):
    rows = reviews(3)
    rows[1]["text"] = "word " * 20_000  # 100,000 characters
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    code, output = run("predict", "--model", file_model, "--file", path, "--output", tmp_path / "p.jsonl")
    one_line_error(code, output, "long.jsonl: row 2:", "longer than --max-length 64", "--truncation left")
    code, output = run("evaluate", "--model", file_model, "--file", path)
    one_line_error(code, output, "long.jsonl: row 2:", "longer than --max-length 64")
    code, output = run(
        "predict", "--model", file_model, "--file", path, "--output", tmp_path / "p.jsonl", "--truncation", "left"
    )
    assert code == 0, output
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3


# ---------------------------------------------------------------------------------- streaming predict
def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_predictions_carry_ids_and_kept_columns_in_every_format(file_model, tmp_path):
    rows = [{**r, "source": f"site-{k % 2}"} for k, r in enumerate(reviews(9))]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "p.jsonl"
    summary = predict(file_model, out, str(path), keep_columns=["source"], chunk_rows=4, progress=False)
    got = _jsonl(out)
    assert summary.rows == 9 and summary.id_column == "id"
    assert [r["id"] for r in got] == [r["id"] for r in rows] and got[1]["source"] == "site-1"
    assert got[0]["label"] == "pos" and set(got[0]["probabilities"]) == {"neg", "pos"}
    assert not (tmp_path / "p.jsonl.progress.json").exists()
    predict(file_model, tmp_path / "p.csv", str(path), keep_columns=["source"], chunk_rows=4, progress=False)
    table = read_table(tmp_path / "p.csv")
    assert [r["id"] for r in table] == [r["id"] for r in rows] and table[2]["source"] == "site-0"
    assert float(table[4]["probability_pos"]) == pytest.approx(got[4]["probabilities"]["pos"], abs=1e-6)
    predict(file_model, tmp_path / "p.parquet", str(path), keep_columns=["source"], chunk_rows=4, progress=False)
    parquet = read_table(tmp_path / "p.parquet")
    assert [r["id"] for r in parquet] == [r["id"] for r in rows] and parquet[8]["prediction"] == got[8]["prediction"]
    assert not (tmp_path / "p.parquet.parts").exists()
    # no id column: rows are named by their 1-based number
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"text": r["text"]} for r in rows[:3]])
    predict(file_model, tmp_path / "q.jsonl", str(plain), progress=False)
    assert [r["id"] for r in _jsonl(tmp_path / "q.jsonl")] == [1, 2, 3]
    code, output = run("predict", "--model", file_model, "--file", path, "--output", tmp_path / "x.jsonl",
                       "--keep-columns", "nope")  # fmt: skip
    one_line_error(code, output, "in.jsonl: row 1: field 'nope': no such column to keep")


class Killed(BaseException):
    pass


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_a_killed_prediction_resumes_with_nothing_duplicated(file_model, tmp_path, monkeypatch, suffix):
    path = write_jsonl(tmp_path / "in.jsonl", reviews(11))
    whole = tmp_path / f"whole.{suffix}"
    predict(file_model, whole, str(path), chunk_rows=3, progress=False)
    out = tmp_path / f"p.{suffix}"
    original = PredictionSink.write
    calls = {"n": 0}

    def dies_in_the_third_chunk(self, rows):
        calls["n"] += 1
        if calls["n"] == 3:  # part of the chunk reaches the file, then the process dies
            if self.format == "jsonl":
                with self.path.open("a") as handle:
                    handle.write(json.dumps(rows[0]) + "\n" + '{"id": "torn')
            raise Killed
        original(self, rows)

    monkeypatch.setattr(PredictionSink, "write", dies_in_the_third_chunk)
    with pytest.raises(Killed):
        predict(file_model, out, str(path), chunk_rows=3, progress=False)
    monkeypatch.setattr(PredictionSink, "write", original)
    summary = predict(file_model, out, str(path), chunk_rows=3, progress=False)
    assert summary.resumed_from == 6 and summary.rows == 11
    assert read_table(out) == read_table(whole)
    assert not out.with_name(out.name + ".progress.json").exists()


def test_a_different_input_starts_over_instead_of_resuming(file_model, tmp_path):
    first = write_jsonl(tmp_path / "in.jsonl", reviews(4))
    out = tmp_path / "p.jsonl"
    sink_state = out.with_name("p.jsonl.progress.json")
    predict(file_model, out, str(first), progress=False)
    sink_state.write_text(json.dumps({"fingerprint": {"other": 1}, "rows": 2, "bytes": 10}))
    summary = predict(file_model, out, str(first), progress=False)
    assert summary.resumed_from == 0 and len(_jsonl(out)) == 4


def test_predicting_a_huge_file_keeps_memory_flat(file_model, tmp_path):
    """Peak resident memory of predicting 1,000 and 10,000 rows, each in a fresh process (reported with -s, and
    bounded loosely: the larger file must not grow memory with its size)."""
    script = textwrap.dedent(
        """
        import json, resource, sys
        from dhrd.inference.prediction import predict
        predict(sys.argv[1], sys.argv[2], sys.argv[3], chunk_rows=512, progress=False)
        print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        """
    )
    peaks = {}
    for n in (1_000, 10_000):
        path = tmp_path / f"in-{n}.csv"
        with path.open("w") as handle:
            handle.write("id,text\n")
            for k in range(n):
                handle.write(f"x{k},the film number {k} was {WORDS[k % 6]} and long enough to count\n")
        out = tmp_path / f"p-{n}.jsonl"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", script, str(file_model), str(out), str(path)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[n] = json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]
        assert sum(1 for _ in iter_table(out)) == n
    print(f"peak RSS: {peaks[1_000]:.0f} MB for 1,000 rows, {peaks[10_000]:.0f} MB for 10,000 rows")
    assert peaks[10_000] < peaks[1_000] + 64, peaks


def test_evaluating_a_file_in_chunks_scores_as_training_did(file_model, tmp_path):
    from dhrd.inference.evaluation import evaluate

    trained = json.loads((file_model / "metrics.json").read_text())["tasks"]["custom"]
    metrics = evaluate(file_model, file=str(file_model.parent / "val.jsonl"), output=tmp_path / "m.json")
    assert metrics["tasks"]["custom"]["accuracy"] == pytest.approx(trained["accuracy"])
    assert metrics["rows"] == 6 and json.loads((tmp_path / "m.json").read_text())["rows"] == 6
    assert evaluate(file_model, file=str(file_model.parent / "val.jsonl"), max_examples=4)["rows"] == 4


def test_a_reproduce_config_with_a_byte_order_mark_is_read(tmp_path):
    from dhrd.reproduction import read_config

    config = tmp_path / "c.toml"
    config.write_bytes(b'\xef\xbb\xbftasks = "cb"\nseeds = [1, 2]\n')
    assert read_config(config) == {"tasks": "cb", "seeds": [1, 2]}
    config.write_bytes(b'tasks = "caf\xe9"\n')
    with pytest.raises(DHRDInputError, match=r"c.toml: line 1: byte 0xe9 at byte offset 12"):
        read_config(config)


def test_truncation_left_keeps_the_last_tokens_as_the_saved_tokenizer_does(tiny_backbone, tmp_path):
    """A long input loses its start, keeping exactly the last --max-length tokens, and the saved tokenizer
    (what pipeline(..., truncation=True) uses) cuts it the same way."""
    import torch
    from transformers import AutoTokenizer

    from dhrd.inference.evaluation import encode_for_inference, predict_proba
    from dhrd.modeling import build_classifier, save_classifier

    classifier, tokenizer, _ = build_classifier(str(tiny_backbone), ["neg", "pos"], seed=0)
    text = " ".join(f"{WORDS[k % 6]} film {k}" for k in range(40))
    full = tokenizer(text)["input_ids"]
    assert len(full) > 16
    ours = encode_for_inference([text], tokenizer, 16, "left")[0]
    assert ours == full[-16:]
    save_classifier(classifier, tokenizer, tmp_path / "m", spec={"max_length": 16, "truncation": "left"},
                    max_length=16, truncation="left")  # fmt: skip
    saved = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert saved(text, truncation=True)["input_ids"] == ours
    probs = predict_proba(classifier, tokenizer, [text], max_length=16, truncation="left", bf16=False, progress=False)
    with torch.no_grad():
        logits = classifier(input_ids=torch.tensor([ours]), attention_mask=torch.ones(1, 16, dtype=torch.long)).logits
    np.testing.assert_allclose(probs, torch.softmax(logits, -1).numpy(), atol=1e-5)


@pytest.mark.parametrize("umask, folder, file", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_atomic_directory_follows_the_umask(tmp_path, umask, folder, file):
    """A saved folder is as readable as anything else the user makes: not tempfile's 0o700, and the weights not
    safetensors' own 0o600; an executable keeps its execute bits."""
    import stat

    import torch
    from safetensors.torch import save_file

    from dhrd.runtime import atomic_directory, write_json_atomic

    def mode(path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    earlier = os.umask(umask)
    try:
        with atomic_directory(tmp_path / "model") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))
            write_json_atomic(tmp / "config.json", {})
            (tmp / "sub").mkdir(mode=0o700)
            (tmp / "sub" / "run.sh").write_text("#!/bin/sh\n")
            (tmp / "sub" / "run.sh").chmod(0o700)
        write_json_atomic(tmp_path / "metrics.json", {})
    finally:
        os.umask(earlier)
    model = tmp_path / "model"
    assert (mode(model), mode(model / "sub"), mode(model / "sub" / "run.sh")) == (folder, folder, folder)
    assert (mode(model / "model.safetensors"), mode(model / "config.json")) == (file, file)
    assert mode(tmp_path / "metrics.json") == file


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    from dhrd.runtime import atomic_directory

    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("1")
    assert (target / "weights").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:  # a failure half-way
        (tmp / "weights").write_text("2")
        raise RuntimeError("disk full")
    assert (target / "weights").read_text() == "1"  # the earlier one is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # and no temporary folder is left
    with atomic_directory(target, replace=False) as tmp:  # another process wrote it first: kept
        (tmp / "weights").write_text("3")
    assert (target / "weights").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["model"]
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("4")
    assert (target / "weights").read_text() == "4"


def test_two_processes_writing_one_file_both_land(tmp_path):
    """Two study queues keep one study's cells in one file: a write that starts while another is open must not
    lose its temporary file to the other's rename; a temporary file of a killed writer goes with the next write."""
    import subprocess
    import sys

    from dhrd.runtime import atomic_file

    target = tmp_path / "cells.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stray = tmp_path / f".cells.json.{int(dead.stdout)}.tmp"  # its process has exited: abandoned
    stray.write_text("half")
    with atomic_file(target) as first:
        first.write("first")
        with atomic_file(target) as second:  # another writer, as if in another process
            second.write("second")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["cells.json"]


@pytest.mark.parametrize("cap, expected", [("AVX2", False), ("avx512_core_vnni", False), ("", None)])
def test_onednn_held_below_bf16_turns_bf16_off(monkeypatch, cap, expected):
    """A bf16 machine made to run as one without (ONEDNN_MAX_CPU_ISA=AVX2) trains and scores in float32; without
    a cap, the CPU's own flags decide."""
    import torch

    from dhrd.runtime import bf16_supported

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    if expected is None:
        expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert bf16_supported() is expected
