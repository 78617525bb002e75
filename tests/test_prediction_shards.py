"""Prediction over several processes (issue 28, item 6): each process predicts every Nth chunk into its own
resumable shard, and the main process joins the shards in input order into the single-process output.

Most tests run the processes one after another in this process (the main one last, as the barrier orders
them), which lets a kill be placed at every write; one test launches 2 real CPU processes (gloo) through
``accelerate launch``, and a fault test kills a launched run and resumes it."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import write_jsonl
from typer.testing import CliRunner

import dhrd.inference.prediction_rows
from dhrd.cli.commands import app
from dhrd.data.tables import read_table
from dhrd.errors import DHRDInputError
from dhrd.inference.prediction import predict
from dhrd.inference.prediction_sink import PredictionSink, shards_dir

WORDS = ["good", "great", "fine", "bad", "awful", "poor"]


def reviews(n: int) -> list[dict]:
    return [
        {"id": f"r{k}", "text": f"the film number {k} was {WORDS[k % 6]}", "label": "pos" if k % 6 < 3 else "neg"}
        for k in range(n)
    ]


@pytest.fixture(scope="module")
def model(tiny_backbone, tmp_path_factory):
    """A tiny pooled classifier trained on a file with an id column."""
    root = tmp_path_factory.mktemp("shards-model")
    write_jsonl(root / "train.jsonl", reviews(12))
    write_jsonl(root / "val.jsonl", reviews(6))
    args = [
        "train", "--train-file", root / "train.jsonl", "--validation-file", root / "val.jsonl", "--backbone",
        tiny_backbone, "--output-dir", root / "run", "--no-bf16", "--epochs", "1", "--batch-size", "4",
        "--id-column", "id", "--max-length", "64",
    ]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return root / "run"


class FakeProcesses:
    """Rank ``process_index`` of ``num_processes``, for processes run one after another in this process;
    ``given`` is what every rank run so far gave to ``gather``."""

    def __init__(self, rank: int, count: int, given: dict):
        self.process_index, self.num_processes, self.given = rank, count, given
        self.is_main_process = rank == 0

    def gather(self, value: int) -> list[int]:
        self.given[self.process_index] = value
        return [self.given.get(rank, 0) for rank in range(self.num_processes)]


def predict_as(monkeypatch, count: int, *args, **kwargs) -> list:
    """``predict`` as ``count`` processes would run it: rank count-1 first, the main one (which joins) last.
    Every rank's summary, in rank order."""
    given, summaries = {}, {}
    with monkeypatch.context() as patch:
        for rank in reversed(range(count)):
            patch.setattr("dhrd.inference.prediction_shards.Processes", lambda r=rank: FakeProcesses(r, count, given))
            summaries[rank] = predict(*args, progress=False, **kwargs)
    return [summaries[rank] for rank in range(count)]


def leftovers(output) -> list[str]:
    return sorted(p.name for p in output.parent.iterdir() if p.name != output.name and p.name != "in.jsonl")


SHARD_ROWS = {2: [5], 3: [3, 3], 5: [3, 3, 2, 0]}  # the other ranks' rows of 11 in chunks of 3


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_shards_join_into_the_single_process_output(model, tmp_path, monkeypatch, suffix):
    path = write_jsonl(tmp_path / "in.jsonl", [{**r, "site": k % 2} for k, r in enumerate(reviews(11))])
    single = tmp_path / "single" / f"p.{suffix}"
    predict(model, single, str(path), chunk_rows=3, keep_columns=["site"], progress=False)
    for count in (2, 3, 5):  # 5 processes for 4 chunks: one has none
        out = tmp_path / f"n{count}" / f"p.{suffix}"
        summaries = predict_as(monkeypatch, count, model, out, str(path), chunk_rows=3, keep_columns=["site"])
        main = summaries[0]
        assert (main.rows, main.processes, main.main_process, main.resumed_from) == (11, count, True, 0)
        # chunks of 3, 3, 3 and 2 rows: chunk k is rank k % count's
        assert [s.rows for s in summaries[1:]] == SHARD_ROWS[count] and not any(s.main_process for s in summaries[1:])
        if suffix == "parquet":  # the same rows; a Parquet file's bytes also depend on its row groups
            assert read_table(out) == read_table(single)
        else:
            assert out.read_bytes() == single.read_bytes(), count
        assert leftovers(out) == []  # no progress record, no shards


def test_a_tiny_input_and_an_empty_one_join_as_one_process_writes_them(model, tmp_path, monkeypatch):
    for n in (0, 2):
        path = write_jsonl(tmp_path / f"in-{n}.jsonl", reviews(n))
        single, out = tmp_path / f"single-{n}.csv", tmp_path / f"shared-{n}.csv"
        predict(model, single, str(path), chunk_rows=3, progress=False)
        assert predict_as(monkeypatch, 3, model, out, str(path), chunk_rows=3)[0].rows == n
        assert out.read_bytes() == single.read_bytes()
        assert not shards_dir(out).exists()


class Killed(BaseException):
    pass


def killing_at(monkeypatch, n: int) -> None:
    """``PredictionSink.write`` dies on its ``n``th call (shards' and output's alike), leaving a torn tail where
    a file has a progress record (one without has no byte: the record is written before the first)."""
    original, calls = PredictionSink.write, {"n": 0}

    def write(self, rows):
        calls["n"] += 1
        if calls["n"] == n:
            if self.format != "parquet" and self.recorded:
                with self.path.open("a") as handle:
                    handle.write(json.dumps(rows[0]) + "\n" + '{"id": "torn')
            raise Killed
        original(self, rows)

    monkeypatch.setattr(PredictionSink, "write", write)


def predicted_texts(monkeypatch) -> list:
    """Every text the model is asked about from here on."""
    seen, original = [], dhrd.inference.prediction_rows.probabilities

    def counting(run, texts, *args, **kwargs):
        seen.extend(texts)
        return original(run, texts, *args, **kwargs)

    monkeypatch.setattr(dhrd.inference.prediction_rows, "probabilities", counting)
    return seen


def recorded_rows(out) -> int:
    """The rows the shards' progress records say are final."""
    return sum(json.loads(p.read_text())["rows"] for p in shards_dir(out).glob("*.progress.json"))


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_a_kill_at_any_write_is_resumed_shard_by_shard(model, tmp_path, monkeypatch, suffix):
    """2 processes, 11 rows in 4 chunks: 4 shard writes then 4 output writes; a kill at each. The rerun predicts
    only the rows no shard had recorded, and the output is the single-process one."""
    path = write_jsonl(tmp_path / "in.jsonl", reviews(11))
    single = tmp_path / f"single.{suffix}"
    predict(model, single, str(path), chunk_rows=3, progress=False)
    for n in range(1, 9):
        out = tmp_path / f"kill-{n}" / f"p.{suffix}"
        with monkeypatch.context() as patch, pytest.raises(Killed):
            killing_at(patch, n)
            predict_as(monkeypatch, 2, model, out, str(path), chunk_rows=3)
        recorded = recorded_rows(out)
        with monkeypatch.context() as patch:
            texts = predicted_texts(patch)
            summary = predict_as(monkeypatch, 2, model, out, str(path), chunk_rows=3)[0]
        assert len(texts) == 11 - recorded, n  # nothing a shard had recorded is predicted again
        assert summary.rows == 11 and summary.resumed_from == recorded
        if suffix == "parquet":
            assert read_table(out) == read_table(single)
        else:
            assert out.read_bytes() == single.read_bytes(), n
        assert sorted(p.name for p in out.parent.iterdir()) == [out.name], n


def test_a_rerun_with_other_processes_or_one_finishes_the_same_output(model, tmp_path, monkeypatch):
    path = write_jsonl(tmp_path / "in.jsonl", reviews(11))
    single = tmp_path / "single.jsonl"
    predict(model, single, str(path), chunk_rows=3, progress=False)
    for then in (3, 1):
        out = tmp_path / f"then-{then}" / "p.jsonl"
        with monkeypatch.context() as patch, pytest.raises(Killed):
            killing_at(patch, 3)  # rank 0's first chunk: rank 1's shard is whole
            predict_as(monkeypatch, 2, model, out, str(path), chunk_rows=3)
        predict_as(monkeypatch, then, model, out, str(path), chunk_rows=3)
        assert out.read_bytes() == single.read_bytes()
        assert not shards_dir(out).exists()  # the 2 processes' shards, unused, are gone with the finished output
    # killed while joining: one process resumes the join (the output's record is a single process's)
    out = tmp_path / "joining" / "p.jsonl"
    with monkeypatch.context() as patch, pytest.raises(Killed):
        killing_at(patch, 6)  # the output's second chunk: its first is recorded
        predict_as(monkeypatch, 2, model, out, str(path), chunk_rows=3)
    with monkeypatch.context() as patch:
        texts = predicted_texts(patch)
        assert predict(model, out, str(path), chunk_rows=3, progress=False).resumed_from == 3
    assert len(texts) == 11 - 3 and out.read_bytes() == single.read_bytes()
    assert predict_as(monkeypatch, 2, model, out, str(path), chunk_rows=3)[0].complete  # finished: left as it is
    # --restart drops the finished output at once: a kill then leaves no old output that looks finished
    with monkeypatch.context() as patch, pytest.raises(Killed):
        killing_at(patch, 3)
        predict_as(monkeypatch, 2, model, out, str(path), chunk_rows=3, resume=False)
    assert not out.exists() and recorded_rows(out) == 5  # rank 1's shard is whole
    assert predict_as(monkeypatch, 2, model, out, str(path), chunk_rows=3)[0].resumed_from == 5
    assert out.read_bytes() == single.read_bytes()


def test_every_process_refuses_a_repeated_id_at_the_same_row(model, tmp_path, monkeypatch):
    rows = reviews(8) + [{**reviews(1)[0], "text": "again"}]  # row 9: in chunk 2, rank 0's of 2
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    for rank in (1, 0):
        monkeypatch.setattr("dhrd.inference.prediction_shards.Processes", lambda r=rank: FakeProcesses(r, 2, {}))
        with pytest.raises(DHRDInputError, match="row 9: field 'id': id 'r0' is also the id of row 1"):
            predict(model, tmp_path / "p.jsonl", str(path), chunk_rows=4, progress=False)
    # no output; each shard keeps its chunk before the repeat, for when the file is fixed (as one process does)
    assert not (tmp_path / "p.jsonl").exists() and recorded_rows(tmp_path / "p.jsonl") == 8
    early = write_jsonl(tmp_path / "early" / "in.jsonl", [*reviews(1), {**reviews(1)[0], "text": "again"}])
    for rank in (1, 0):  # refused in the first chunk: nothing is written, not even a shard folder
        monkeypatch.setattr("dhrd.inference.prediction_shards.Processes", lambda r=rank: FakeProcesses(r, 2, {}))
        with pytest.raises(DHRDInputError, match="row 2: field 'id': id 'r0' is also the id of row 1"):
            predict(model, early.parent / "p.jsonl", str(early), chunk_rows=4, progress=False)
    assert [p.name for p in early.parent.iterdir()] == ["in.jsonl"]


def accelerate_launch(*args, port: int) -> list[str]:
    """``accelerate launch`` of 2 CPU processes (gloo), as ``test_two_cpu_processes_match_one`` launches them."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(port), *map(str, args)]  # fmt: skip


def launched(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"}  # wide: a summary line is not wrapped
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_two_cpu_processes_write_the_single_process_output(model, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", reviews(23))
    single, out = tmp_path / "single.csv", tmp_path / "p.csv"
    predict(model, single, str(path), chunk_rows=4, progress=False)
    command = accelerate_launch("-m", "dhrd", "predict", "--model", model, "--file", path, "--output", out,
                                "--chunk-rows", "4", port=29531)  # fmt: skip
    done = launched(command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_bytes() == single.read_bytes()
    written = [line for line in done.stdout.splitlines() if "predictions written" in line]
    assert len(written) == 1 and "23 predictions" in written[0] and "shared by 2 processes" in written[0], done.stdout
    assert leftovers(out) == ["single.csv"]


@pytest.mark.faults
def test_a_killed_launch_resumes_each_shard(model, tmp_path):
    """Rank 1 dies (os._exit) in its third chunk's write; torchrun then stops rank 0 wherever it is. The same
    command resumes every shard and writes the single-process output."""
    path = write_jsonl(tmp_path / "in.jsonl", reviews(40))
    single, out = tmp_path / "single.jsonl", tmp_path / "p.jsonl"
    predict(model, single, str(path), chunk_rows=4, progress=False)
    script = tmp_path / "dies.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            from dhrd.cli.commands import app
            from dhrd.inference.prediction_sink import PredictionSink

            original, calls = PredictionSink.write, []

            def write(self, rows):
                if os.environ["RANK"] == "1" and self.path.parent.name.endswith(".shards"):
                    calls.append(1)
                    if len(calls) == 3:
                        with self.path.open("a") as handle:
                            handle.write('{"id": "torn')
                        os._exit(9)
                original(self, rows)

            PredictionSink.write = write
            app()
            """
        )
    )
    args = ["predict", "--model", model, "--file", path, "--output", out, "--chunk-rows", "4"]
    killed = launched(accelerate_launch(script, *args, port=29533))
    assert killed.returncode != 0 and not out.exists()
    assert 0 < recorded_rows(out) < 40
    done = launched(accelerate_launch("-m", "dhrd", *args, port=29535))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed" in done.stdout and out.read_bytes() == single.read_bytes()
    again = launched(accelerate_launch("-m", "dhrd", *args, port=29537))
    assert again.returncode == 0 and "already complete: 40 rows" in again.stdout
    assert out.read_bytes() == single.read_bytes()
