"""Reading the user's tables (CSV, TSV, JSONL, Parquet) row by row, in any text encoding.

Rows are streamed, so memory does not grow with the file. Text files are read as bytes a line at a time and
decoded here, so a byte the encoding cannot decode is reported with its file, row and byte offset instead of
a traceback. UTF-8 files may start with a byte-order mark (what spreadsheet exports and many editors write).
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import DHRDInputError, missing_file, where
from .datasets_input import DatasetSplit

DEFAULT_ENCODING = "utf-8"
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
SUFFIXES = ".csv, .tsv, .jsonl or .parquet"

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long passages are refused by length later, not here


def check_encoding(encoding: str | None) -> str:
    """A known codec's name; ``utf-8`` (BOM or not) when none is given."""
    encoding = encoding or DEFAULT_ENCODING
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DHRDInputError(f"unknown --encoding {encoding!r}: try utf-8, cp1252 or latin-1") from None
    return encoding


def _line_based(encoding: str) -> bool:
    """Whether newlines are the byte 0x0A (UTF-8, Latin-1, cp1252, ...), so lines can be split as bytes."""
    return codecs.lookup(encoding).name not in {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


class Undecodable(Exception):
    def __init__(self, line: int, offset: int, byte: int):
        self.line, self.offset, self.byte = line, offset, byte


def iter_lines(path: Path, encoding: str = DEFAULT_ENCODING) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` with line endings kept; a UTF-8 byte-order mark is dropped. Raises
    ``Undecodable`` with the line and byte offset of a byte the encoding cannot decode."""
    encoding = check_encoding(encoding)
    if not _line_based(encoding):  # UTF-16/32: let Python find the lines; no byte offsets
        with path.open(encoding=encoding, newline="") as handle:
            number = 0
            try:
                for number, text in enumerate(handle, start=1):
                    yield number, text
            except UnicodeDecodeError as error:
                raise Undecodable(number + 1, -1, error.object[error.start]) from None
        return
    utf8 = codecs.lookup(encoding).name == "utf-8"
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and utf8 and raw.startswith(codecs.BOM_UTF8):
                raw, offset = raw[len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as error:
                raise Undecodable(number, offset + error.start, raw[error.start]) from None
            offset += len(raw)
            yield number, text


# byte-order marks of the encodings a file can say it has (UTF-32's first: it starts like UTF-16's)
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_error(path: Path, row: int | str, error: Undecodable, encoding: str) -> DHRDInputError:
    at = f" at byte offset {error.offset}" if error.offset >= 0 else ""
    row_text = row if isinstance(row, str) else f"row {row}"
    return DHRDInputError(
        f"{path}: {row_text}: byte 0x{error.byte:02x}{at} (line {error.line}) is not valid {encoding}; "
        + _encoding_hint(path, encoding)
    )


def _encoding_hint(path: Path, encoding: str) -> str:
    """What to pass instead: the encoding a byte-order mark names, else cp1252 (what spreadsheets export;
    latin-1 would read its curly quotes, dashes and euro sign as control characters)."""
    try:
        with Path(path).open("rb") as handle:
            start = handle.read(4)
    except OSError:
        start = b""
    named = next((name for bom, name in BOMS if start.startswith(bom)), None)
    if named and codecs.lookup(encoding).name != codecs.lookup(named).name:
        return f"the file starts with a {named.upper()} byte-order mark: pass --encoding {named}"
    other = "utf-8" if codecs.lookup(encoding).name != "utf-8" else "cp1252, what spreadsheets export; or latin-1"
    return f"if the file is written in another encoding, pass --encoding (for example {other})"


def id_key(value) -> str:
    """An id as text, the same whether a file stored it as a string, an integer or an integral float."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _iter_jsonl(path: Path, encoding: str) -> Iterator[tuple[int, dict]]:
    lines = iter_lines(path, encoding)
    number = 0  # data rows: blank lines are not counted
    while True:
        try:
            line_number, line = next(lines)
        except StopIteration:
            return
        except Undecodable as error:
            raise decode_error(path, number + 1, error, encoding) from None
        if not line.strip():
            continue
        number += 1
        at = where(path, number) + (f" (line {line_number})" if line_number != number else "")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DHRDInputError(f"{at}: unreadable JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DHRDInputError(f"{at}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def _iter_delimited(path: Path, delimiter: str, encoding: str) -> Iterator[tuple[int, dict]]:
    """CSV/TSV records as dicts of strings; row 1 is the first record after the header."""
    lines = iter_lines(path, encoding)
    state = {"row": "header"}

    def text():
        try:
            for _, line in lines:
                yield line
        except Undecodable as error:
            raise decode_error(path, state["row"], error, encoding) from None

    reader = csv.reader(text(), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise DHRDInputError(f"{path}: header: unreadable ({error})") from None
    header = [name.strip() for name in header]
    number = 0  # data rows: blank lines are not counted
    while True:
        state["row"] = number + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DHRDInputError(f"{where(path, number + 1)}: unreadable ({error})") from None
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # a blank line
        number += 1
        if len(values) > len(header):
            raise DHRDInputError(
                f"{where(path, number)}: {len(values)} fields but the header has {len(header)} "
                f"(is a field with a {'tab' if delimiter == chr(9) else 'comma'} not quoted?)"
            )
        yield number, dict(zip(header, values + [""] * (len(header) - len(values))))


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        number = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise DHRDInputError(f"{path}: unreadable Parquet ({str(error).splitlines()[0]})") from None


def table_source(path):
    """A file's path as a ``Path``; a ``datasets`` split (``datasets_input.DatasetSplit``) as it is."""
    return path if isinstance(path, DatasetSplit) else Path(path)


def iter_table(path, encoding: str | None = None) -> Iterator[tuple[int, dict]]:
    """``(row number, row)`` for every row of a CSV, TSV, JSONL or Parquet file, streamed. Row numbers count
    data rows from 1: the first JSON object, or the first CSV record after the header; blank lines are skipped
    and not counted, so row N is the N-th row of data (its key where there is no id column). A ``datasets``
    split is read the same way."""
    if isinstance(path, DatasetSplit):
        return path.rows()
    path = Path(path)
    encoding = check_encoding(encoding)
    if not path.is_file():
        raise missing_file(path)
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        return _iter_jsonl(path, encoding)
    if suffix in TEXT_SUFFIXES:
        return _iter_delimited(path, TEXT_SUFFIXES[suffix], encoding)
    if suffix in PARQUET_SUFFIXES:
        return _iter_parquet(path)
    raise DHRDInputError(f"{path}: unknown file type {suffix!r}: use {SUFFIXES}")


def read_jsonl(path: str | Path, encoding: str | None = None) -> list[dict]:
    """Every row of a JSON-lines file, whatever its name ends with."""
    path = Path(path)
    if not path.is_file():
        raise missing_file(path)
    return [row for _, row in _iter_jsonl(path, check_encoding(encoding))]


def read_table(path: str | Path, encoding: str | None = None) -> list[dict]:
    """Every row of a table (for files that must be read whole: training sets, rationale imports)."""
    return [row for _, row in iter_table(path, encoding)]


def read_text(path: str | Path, encoding: str | None = None) -> str:
    """A whole text file (a template, a config), with the same BOM and decoding-error handling."""
    path = Path(path)
    encoding = check_encoding(encoding)
    if not path.is_file():
        raise missing_file(path)
    try:
        return "".join(line for _, line in iter_lines(path, encoding))
    except Undecodable as error:
        raise decode_error(path, f"line {error.line}", error, encoding) from None
