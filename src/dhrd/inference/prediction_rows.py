"""A file's or dataset's rows predicted a chunk at a time into a sink: each row read and checked (its id, text,
label, kept columns), predicted, and made an output row. One process predicts every chunk; a launched run's
processes each predict their stride of chunks (``prediction_shards``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.datasets_input import DatasetSplit
from ..data.inputs import RowKeys, row_text
from ..data.tables import PARQUET_SUFFIXES, id_key, is_missing, iter_table
from ..errors import DHRDInputError, where
from .evaluation import predict_proba

CHUNK_ROWS = 1024


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


def prediction_row(key, names, probs, label: str | None, kept: dict) -> dict:
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


@dataclass
class FileRows:
    """The input of a file or dataset prediction, and how it is read: ``chunk_rows`` rows at a time."""

    path: Path | DatasetSplit
    columns: object  # dhrd.data.inputs.Columns
    keep: list[str]
    encoding: str
    chunk_rows: int


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
    probs = probabilities(run, [text for _, _, text, _, _ in checked], str(path), [f"row {n}" for n, *_ in checked])
    return [prediction_row(key, run["names"], p, label, kept) for (_, key, _, label, kept), p in zip(checked, probs)]


def probabilities(run, texts, source, row_names, progress: bool = False) -> np.ndarray:
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
