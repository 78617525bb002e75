"""``dhrd predict``: classify a file of any size in chunks, appending the predictions as it goes.

Memory stays flat whatever the file holds: rows are read, encoded, predicted and written a chunk at a time
(``chunk_rows``), and each batch is bounded by the length policy and a token budget (``predict_proba``).
Output is JSONL, CSV or Parquet by the output's extension. From before the first row is written until the
output is whole, a small progress record beside it (``<output>.progress.json``) says how many input rows, and
how many bytes of output, are final; a run killed at any moment is resumed by the same command from there, with
nothing duplicated or torn. An output without a progress record is finished: the same command leaves it as it
is (``--restart`` predicts again). Under ``accelerate launch --num_processes N`` the rows are shared out
between the processes and joined into the same one output (``dhrd.inference.prediction_shards``).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..checks import at_least, inference_options, input_file, output_file, split_name
from ..data.datasets_input import DatasetSplit
from ..data.inputs import RowKeys, row_text
from ..data.tables import PARQUET_SUFFIXES, check_encoding, id_key, is_missing, iter_table
from ..data.tasks import choices_by_group
from ..errors import DHRDInputError, where
from ..runtime import write_json_atomic, write_text_atomic
from .engines import load_inference_model, model_file
from .evaluation import (
    examples_for_model,
    inference_limits,
    input_source,
    model_columns,
    predict_proba,
    saved_data_spec,
)

logger = logging.getLogger(__name__)

FORMATS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
CHUNK_ROWS = 1024


def output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DHRDInputError(f"{path}: unknown output type {suffix!r}: use .jsonl, .csv or .parquet")
    return FORMATS[suffix]


def _disk_error(path: Path, error: OSError, rows: int) -> DHRDInputError:
    return DHRDInputError(
        f"{path}: could not write ({error.strerror or error}); the {rows} predictions before are kept: "
        "free some space and run the same command again to continue"
    )


class PredictionSink:
    """Appends prediction rows to ``path``, chunk by chunk, and records after each chunk how many input rows
    are done (``<path>.progress.json``). JSONL and CSV are appended in place (a torn tail past the recorded
    size is cut on resume); Parquet goes to one part file per chunk (``<path>.parts/``), joined at the end.
    The record is written before the first row and removed once the output is whole, so an output without one
    is finished (``finished_rows``). A table's columns are ``columns``, else those of the first chunk's rows."""

    def __init__(self, path: str | Path, fingerprint: dict, resume: bool = True, columns: list[str] | None = None):
        self.path = Path(path)
        self.format = output_format(self.path)
        self.state_path = self.path.with_name(self.path.name + ".progress.json")
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.fingerprint = fingerprint
        self.done = 0
        self.columns = columns
        self.recorded = False  # whether the progress record exists (it is written before the first row)
        state = self._state() if resume else None
        if state and state.get("fingerprint") == fingerprint and self._restore(state):
            self.done = int(state["rows"])
            self.columns = state.get("columns") or columns
            self.recorded = True
        else:
            self._clear()
        self.resumed_from = self.done
        self.committed_bytes = self._size()  # where a failed append is cut back to

    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _restore(self, state: dict) -> bool:
        """Cut what was written after the last recorded chunk; False when the output no longer matches."""
        if self.format == "parquet":
            if not self.parts.is_dir():
                return int(state["rows"]) == 0
            for part in self.parts.glob("part-*.parquet"):
                if int(part.stem.split("-")[1]) >= int(state["rows"]):
                    part.unlink()  # written, but its chunk was not recorded: made again
            for stray in self.parts.glob(".tmp-*"):
                stray.unlink()
            return True
        size = int(state.get("bytes", 0))
        if not self.path.is_file():
            return size == 0
        if self.path.stat().st_size < size:
            return False
        with self.path.open("r+b") as handle:
            handle.truncate(size)
        return True

    def _clear(self) -> None:
        """Start over: the record goes first, so that a kill part-way never leaves one beside a cut output."""
        self.state_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)
        self.done = 0

    def _size(self) -> int:
        return self.path.stat().st_size if self.format != "parquet" and self.path.is_file() else 0

    def _commit(self) -> None:
        # the folder is made with the first record, so that a run that fails before its first row leaves nothing
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = self._size()
        write_json_atomic(
            self.state_path,
            {"fingerprint": self.fingerprint, "rows": self.done, "bytes": size, "columns": self.columns},
        )
        self.committed_bytes, self.recorded = size, True

    def write(self, rows: list[dict]) -> None:
        """Append one chunk's predictions (whole rows only), then record them as done."""
        if not rows:
            return
        if self.columns is None:  # every key of the chunk's rows, in order of appearance
            flat = rows if self.format == "jsonl" else [_flat(row) for row in rows]
            self.columns = list(dict.fromkeys(key for row in flat for key in row))
        if not self.recorded:  # before the first byte: an output without a record is a finished one
            try:
                self._commit()
            except OSError as error:
                raise _disk_error(self.state_path, error, 0) from None
        try:
            if self.format == "parquet":
                self._write_part(rows)
            else:
                self._append(rows)
        except OSError as error:
            self._restore({"rows": self.done, "bytes": self.committed_bytes})
            raise _disk_error(self.path, error, self.done) from None
        self.done += len(rows)
        try:
            self._commit()
        except OSError as error:
            raise _disk_error(self.state_path, error, self.done - len(rows)) from None

    def _append(self, rows: list[dict]) -> None:
        with self.path.open("a", encoding="utf-8", newline="") as handle:
            if self.format == "jsonl":
                handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            else:
                writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore", restval="")
                if handle.tell() == 0:
                    writer.writeheader()
                writer.writerows(_flat(row, self.columns) for row in rows)
            handle.flush()
            os.fsync(handle.fileno())

    def _write_part(self, rows: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.parts.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([_flat(row, self.columns) for row in rows])
        tmp = self.parts / f".tmp-{self.done:012d}.parquet"
        pq.write_table(table, tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.parts / f"part-{self.done:012d}.parquet")

    def finish(self) -> None:
        """Parquet: join the parts into the output (streamed, atomically). No row at all: the empty output (a
        CSV's header). Then the progress record goes, and last the parts (a kill before that leaves them to
        ``finished_rows``, never an output that looks unfinished)."""
        try:
            if self.done == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._write_empty()
            elif self.format == "parquet":
                self._join_parts()
        except OSError as error:
            raise _disk_error(self.path, error, self.done) from None
        self.state_path.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)
        shutil.rmtree(shards_dir(self.path), ignore_errors=True)  # what processes sharing it out left

    def _join_parts(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = sorted(self.parts.glob("part-*.parquet"))
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
            with pq.ParquetWriter(tmp, schema) as writer:
                for part in parts:
                    writer.write_table(pq.read_table(part).cast(schema))
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def _write_empty(self) -> None:
        """An input with no row gets an output with none: empty JSONL, a CSV header, a Parquet schema."""
        columns = self.columns or ["id", "prediction"]
        if self.format == "jsonl":
            write_text_atomic(self.path, "")
        elif self.format == "csv":
            write_text_atomic(self.path, ",".join(columns) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            tmp = self.path.with_name(f".{self.path.name}.tmp")
            pq.write_table(pa.table({name: pa.array([], pa.string()) for name in columns}), tmp)
            os.replace(tmp, self.path)


def shards_dir(output: Path) -> Path:
    """Where the processes of a launched run write their shares of ``output`` (``dhrd.inference.prediction_shards``)."""
    return output.with_name(output.name + ".shards")


def finished_rows(path: Path) -> int | None:
    """The number of rows of a finished output (one without a progress record), None where there is none.
    Parts and shards a kill left after the record went are dropped: the output they made is whole."""
    state = path.with_name(path.name + ".progress.json")
    if not path.is_file() or state.exists():
        return None
    shutil.rmtree(path.with_name(path.name + ".parts"), ignore_errors=True)
    shutil.rmtree(shards_dir(path), ignore_errors=True)
    try:
        if output_format(path) == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        return sum(1 for _ in iter_table(path)) if path.suffix.lower() == ".csv" else _lines(path)
    except (OSError, ValueError, DHRDInputError) as error:
        raise DHRDInputError(
            f"{path}: exists, but is no predictions file ({error}): choose another --output, or pass --restart to "
            "replace it"
        ) from None


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _flat(row: dict, columns: list[str] | None = None) -> dict:
    """A row for a table format: one ``probability_<label>`` column per label, kept values as text."""
    flat = {}
    for key, value in row.items():
        if key == "probabilities":
            flat.update({f"probability_{name}": p for name, p in value.items()})
        elif key in ("id", "prediction", "label", "example_prediction") or isinstance(value, (int, float)):
            flat[key] = value
        else:
            flat[key] = None if value is None else (value if isinstance(value, str) else json.dumps(value))
    return flat if columns is None else {name: flat.get(name) for name in columns}


@dataclass
class PredictSummary:
    output: str
    rows: int
    resumed_from: int = 0
    seconds: float = 0.0
    id_column: str | None = None
    kept_columns: list[str] = field(default_factory=list)
    complete: bool = False  # finished by an earlier run, and left as it was
    processes: int = 1  # the processes that shared the rows out (accelerate launch)
    main_process: bool = True  # False on the other processes of a launched run: the main one reports

    @property
    def rows_per_second(self) -> float:
        return (self.rows - self.resumed_from) / self.seconds if self.seconds else 0.0


def _fingerprint(model_file: Path, source: dict, settings: dict) -> dict:
    """What a resumed run must share with the interrupted one: the model (its directory and the time stamp of the
    file the engine reads), the input and the settings."""
    stamp = {"model": str(model_file.parent.resolve()), "model_mtime_ns": model_file.stat().st_mtime_ns}
    return {**stamp, **source, **settings}


def _count_rows(path) -> int | None:
    """About how many rows a file has, for the progress bar (newlines, read in blocks; Parquet's metadata)."""
    if isinstance(path, DatasetSplit):
        return len(path)
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        lines = 0
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                lines += block.count(b"\n")
        return max(0, lines - (1 if path.suffix.lower() in (".csv", ".tsv") else 0))
    except (OSError, ValueError):
        return None


def _prediction_row(key, names, probs, label: str | None, kept: dict) -> dict:
    row = {"id": key, "prediction": names[int(np.argmax(probs))]}
    row["probabilities"] = {name: round(float(p), 6) for name, p in zip(names, probs)}
    if label is not None:
        row["label"] = label
    return {**row, **kept}


def _label(row: dict, columns) -> str | None:
    """A row's label as the input gives it (its name where the model names the values), whatever it is: a
    file to classify may carry labels the model never saw; only ``evaluate`` needs known ones."""
    value = row.get(columns.label)
    if is_missing(value) or not id_key(value):
        return None
    return columns.label_name(value)


def _table_columns(names, keep) -> list[str]:
    """A CSV's or Parquet's columns, the same for every row: the label's is there even where row 1 has none."""
    return ["id", "prediction", *(f"probability_{name}" for name in names), "label", *keep]


def predict(
    model_path: str | Path,
    output: str | Path,
    file: str | None = None,
    task: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    batch_size: int = 32,
    bf16: bool | None = None,
    compile: bool = False,
    trust_remote_code: bool = False,
    id_column: str | None = None,
    keep_columns: list[str] | tuple[str, ...] = (),
    encoding: str | None = None,
    max_length: int | None = None,
    truncation: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    resume: bool = True,
    progress: bool = True,
    dataset: str | None = None,
    dataset_config: str | None = None,
    engine: str = "torch",
) -> PredictSummary:
    """One prediction per input row (its id, the predicted label, every label's probability, the label where
    the input has one, and ``keep_columns``), appended to ``output`` in chunks; resumable after a kill. The
    rows are a file's, a ``datasets`` dataset's ``split`` (a ``save_to_disk`` directory or a hub name), or a
    SuperGLUE task's ``split``.

    Rows are identified by ``id_column`` [default: the model's training id column, else an ``id`` column
    where the file has one, else the 1-based row number]. ``engine``: ``torch`` runs a trained model directory,
    ``onnxruntime`` an export directory or one of its ``.onnx`` files (``dhrd export --format onnx``). A finished
    ``output`` is left as it is (``complete``), unless ``resume`` is off."""
    output = Path(output)
    output_file("--output", output)
    output_format(output)
    path = _checked_input(output, file, task, split, data_dir, dataset, dataset_config, batch_size, max_length)
    at_least("--chunk-rows", chunk_rows, 1)
    encoding = check_encoding(encoding)
    from .prediction_shards import Processes

    processes = Processes()  # one, unless accelerate launched several
    shared = dict(processes=processes.num_processes, main_process=processes.is_main_process)
    if resume and (rows := finished_rows(output)) is not None:
        return PredictSummary(str(output), rows, rows, complete=True, **shared)
    if path is None and not processes.is_main_process:  # a task's split is small, and predicted whole: by one
        return PredictSummary(str(output), 0, **shared)
    model, tokenizer = load_inference_model(model_path, engine, trust_remote_code=trust_remote_code, compile=compile)
    source_file = model_file(model_path, engine)
    max_length, truncation = inference_limits(model, tokenizer, max_length, truncation)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    settings = {"max_length": max_length, "truncation": truncation, "keep_columns": list(keep_columns)}
    if engine != "torch":  # the int8 and fp32 graphs share a directory but not their predictions
        settings.update(engine=engine, model_file=source_file.name)
    run = dict(model=model, tokenizer=tokenizer, names=names, batch_size=batch_size, bf16=bf16, compile=compile)
    run.update(max_length=max_length, truncation=truncation)
    if path is None:
        if keep_columns or id_column:
            raise DHRDInputError("--keep-columns and --id-column are for --file and --dataset")
        source = {"task": task, "split": split, "data_dir": data_dir}
        sink = PredictionSink(output, _fingerprint(source_file, source, settings), resume)
        return _predict_task(run, sink, task, split, data_dir, progress)
    if isinstance(path, DatasetSplit):
        source = path.fingerprint()
    else:
        stat = path.stat()
        source = {"input": str(path.resolve()), "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns}
    id_column = _id_column(path, encoding, id_column, saved_data_spec(model).id_column)
    columns = model_columns(
        model, text_column=text_column, text_pair_column=text_pair_column, id_column=id_column, source=path
    )
    settings.update(columns=[columns.text, columns.text_pair, columns.label, columns.id], encoding=encoding)
    fingerprint = _fingerprint(source_file, source, settings)
    table_columns = _table_columns(names, keep_columns)
    reading = FileRows(path, columns, list(keep_columns), encoding, chunk_rows)
    if processes.num_processes > 1:
        from .prediction_shards import predict_sharded

        return predict_sharded(run, processes, reading, output, fingerprint, table_columns, resume, progress)
    sink = PredictionSink(output, fingerprint, resume, columns=table_columns)
    return _predict_file(run, sink, reading, progress)


def _checked_input(output, file, task, split, data_dir, dataset, dataset_config, batch_size, max_length):
    """The rows to predict (a file's path, a dataset split, or None for a task), with every option checked
    before any model loads."""
    inference_options(batch_size, max_length, data_dir=data_dir)
    if file is None and task is None and dataset is None:
        raise DHRDInputError("give --file or --task (or --dataset)")
    split_name(split)
    if file is None and dataset is None:
        return None
    path = input_source(file, dataset, dataset_config, split)
    if not isinstance(path, DatasetSplit):
        input_file("--file", path)
    return path


def _id_column(path, encoding: str, given: str | None, trained: str | None) -> str | None:
    if given:
        return given
    first = next(iter_table(path, encoding), (None, {}))[1]
    for candidate in (trained, "id"):
        if candidate and candidate in first:
            return candidate
    return None


@dataclass
class FileRows:
    """The input of a file or dataset prediction, and how it is read: ``chunk_rows`` rows at a time."""

    path: Path | DatasetSplit
    columns: object  # dhrd.data.inputs.Columns
    keep: list[str]
    encoding: str
    chunk_rows: int


def _predict_file(run, sink, reading: FileRows, progress) -> PredictSummary:
    started = time.perf_counter()
    predict_chunks(run, sink, reading, progress)
    total = sink.done
    sink.finish()
    return PredictSummary(
        str(sink.path), total, sink.resumed_from, time.perf_counter() - started, reading.columns.id, reading.keep
    )


def predict_chunks(run, sink, reading: FileRows, progress: bool, shard: tuple[int, int] = (0, 1)) -> int:
    """Predict the input chunk by chunk into ``sink``, past the rows it holds already; the number of input rows.

    ``shard`` (rank, count): this process predicts chunk k where k % count == rank (one process: every chunk).
    Every process still reads and checks every row, so that a repeated id or a bad row is refused by each alike
    and at the row one process would refuse."""
    keys = RowKeys(reading.path, reading.columns.id)  # ids must be unique: a repeated one would name two predictions
    rank, processes = shard
    skip, seen, index = sink.done, 0, 0  # skip: this shard's rows written already, read and checked again
    rows = iter_table(reading.path, reading.encoding)
    # closed on any error too, so that an error message starts on a line of its own
    with tqdm(total=_count_rows(reading.path), desc="Predicting", unit="row", disable=not progress) as bar:
        while chunk := [_checked_row(row, n, reading, keys) for n, row in islice(rows, reading.chunk_rows)]:
            if index % processes == rank:
                todo, skip = chunk[skip:], max(0, skip - len(chunk))
                if todo:
                    sink.write(_predicted_rows(run, todo, reading.path))
            seen, index = seen + len(chunk), index + 1
            bar.update(len(chunk))
    return seen


def _checked_row(row: dict, number: int, reading: FileRows, keys: RowKeys) -> tuple:
    """(row number, key, text, label, kept columns) of one input row, or the error that names it."""
    missing = [name for name in reading.keep if name not in row]
    if missing:
        raise DHRDInputError(f"{where(reading.path, number, missing[0])}: no such column to keep")
    text = row_text(row, reading.columns, reading.path, number)
    kept = {name: row[name] for name in reading.keep}
    return number, keys(row, number), text, _label(row, reading.columns), kept


def _predicted_rows(run, checked: list[tuple], path) -> list[dict]:
    probs = _probabilities(run, [text for _, _, text, _, _ in checked], str(path), [f"row {n}" for n, *_ in checked])
    return [_prediction_row(key, run["names"], p, label, kept) for (_, key, _, label, kept), p in zip(checked, probs)]


def _predict_task(run, sink, task, split, data_dir, progress) -> PredictSummary:
    """A SuperGLUE split (small): predicted whole, so that each example's choice can be made over its rows."""
    started = time.perf_counter()
    if sink.done:
        sink.finish()  # a task's rows are written in one chunk: recorded means finished
        return PredictSummary(str(sink.path), sink.done, sink.done)
    examples, _ = examples_for_model(run["model"], task, split, data_dir, require_labels=False)
    probs = _probabilities(run, [e.text for e in examples], f"{task} {split}", [e.id for e in examples], progress)
    chosen = choices_by_group(examples, probs)
    names = run["names"]
    rows = []
    for example, p in zip(examples, probs):
        row = {"id": example.id, "task": example.task, "group": example.group, "candidate": example.candidate}
        row["example_prediction"] = chosen.get(example.group)
        label = None if example.label is None else names[example.label]
        row.update(_prediction_row(example.id, names, p, label, {}))
        rows.append({k: v for k, v in row.items() if v is not None})
    sink.write(rows)
    sink.finish()
    return PredictSummary(str(sink.path), len(rows), 0, time.perf_counter() - started)


def _probabilities(run, texts, source, row_names, progress: bool = False) -> np.ndarray:
    return predict_proba(
        run["model"],
        run["tokenizer"],
        texts,
        run["batch_size"],
        run["max_length"],
        run["truncation"],
        run["bf16"],
        progress=progress,
        compile=run["compile"],
        source=source,
        names=row_names,
    )
