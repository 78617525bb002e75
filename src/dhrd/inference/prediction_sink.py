"""Where ``dhrd predict`` writes: a ``PredictionSink`` appends rows to a JSONL, CSV or Parquet output with a small
progress record beside it (``<output>.progress.json``: the input rows and output bytes that are final), so a run
killed at any moment resumes from there with nothing duplicated or torn; ``finished_rows`` recognises an output
that is whole. Below the prediction itself, which only hands it rows."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from ..data.tables import iter_table
from ..errors import DHRDInputError
from ..runtime import write_json_atomic, write_text_atomic

FORMATS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


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
