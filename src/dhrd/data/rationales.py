"""Teacher rationales for training: read a rationale file (the reference set's or the teacher cache's
format, one JSON object per line with ``idx`` and ``rationale``) and pair rationales with examples."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DHRDInputError, missing_file, where
from ..runtime import find_shared
from .examples import Example
from .tables import Undecodable, decode_error, id_key, iter_lines
from .tasks import TASKS, task_rules

logger = logging.getLogger(__name__)

RATIONALE_MODES = ("consistent", "only_label", "shuffle_reasoning", "shuffle_both")


def default_rationale_dir() -> Path | None:
    """``$DHRD_RATIONALES`` or the shared reference set, ``data/rationales``."""
    return find_shared(Path("data") / "rationales", "DHRD_RATIONALES")


def rationale_file(source: str | Path | None, task: str) -> Path | None:
    """A file as given, or ``<dir>/<Task>/train.jsonl`` for a directory (default: the shared reference set)."""
    base = Path(source) if source is not None else default_rationale_dir()
    if base is None:
        return None
    if base.is_file():
        return base
    folder = TASKS[task].folder if task in TASKS else task
    path = base / folder / "train.jsonl"
    if source is not None and not path.is_file():
        raise missing_file(path, "rationale file")
    return path if path.is_file() else None


@dataclass(frozen=True)
class RationaleRow:
    row: int  # line number in its file
    key: str  # the example id it belongs to, as text (``id_key``)
    rationale: str | None
    label: str | None  # the label the file says the example has, where it says one


def read_rationale_rows(path: Path, encoding: str | None = None) -> list[RationaleRow]:
    """The rows of a rationale file (the reference set's or a teacher cache's format: one JSON object per
    line with ``idx`` and ``rationale``). A torn last line (a writer killed mid-line) is skipped; any other
    bad line is an error naming its row."""
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "rationale file")
    try:
        lines = list(iter_lines(path, encoding or "utf-8"))
    except Undecodable as error:
        raise decode_error(path, error.line, error, encoding or "utf-8") from None
    rows: list[RationaleRow] = []
    first_maker = None
    for number, line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):
                break
            raise DHRDInputError(f"{where(path, number)}: unreadable JSON") from None
        if not isinstance(row, dict):
            raise DHRDInputError(f"{where(path, number)}: expected a JSON object, got {type(row).__name__}")
        for name in ("idx", "rationale"):
            if name not in row:
                raise DHRDInputError(f"{where(path, number, name)}: missing")
        made_by = (row.get("teacher"), row.get("prompt_id"))
        if first_maker is None:
            first_maker = made_by
        elif made_by != first_maker:
            raise DHRDInputError(
                f"{where(path, number, 'teacher')}: made by {made_by}, but earlier rows by {first_maker}: "
                "one rationale file must come from one teacher and prompt"
            )
        text = row["rationale"]
        label = row.get("label")
        rows.append(
            RationaleRow(
                number,
                id_key(row["idx"]),
                text.strip() if isinstance(text, str) and text.strip() else None,
                None if label is None else id_key(label),
            )
        )
    return rows


def read_rationales(path: Path, encoding: str | None = None) -> dict[str, str]:
    """``example id (as text) -> rationale`` of a rationale file, without the rows that have none."""
    return {r.key: r.rationale for r in read_rationale_rows(path, encoding) if r.rationale is not None}


def check_rationale_keys(
    rows: list[RationaleRow],
    examples: list[Example],
    label_names: tuple[str, ...],
    path: Path,
    keyed_by: str,
    label_name=lambda label: label,
) -> None:
    """Refuse a rationale file that does not line up with the training rows, at its first mismatching row:
    an id the data does not have, or (for the user's files, whose labels are the file's own) a row whose
    label differs from the training row's or is no training label. A file numbered from 0 for data numbered
    from 1, or keyed by another column, would otherwise pair every rationale with a neighbouring example: the
    shuffle ablation, trained by accident. Where the user's rows are keyed by their row number, each line
    must say its row's label: numbers alone cannot tell a file shifted by one (one lacking idx 0, say) from
    one that lines up. ``label_name`` reads a file's label value as its name (``Columns.label_name``)."""
    by_key = {str(e.source_idx): e for e in examples}
    numbered = all(task_rules(e.task).own_data and isinstance(e.source_idx, int) for e in examples)
    for row in rows:
        example = by_key.get(row.key)
        if example is None:
            raise DHRDInputError(
                f"{where(path, row.row, 'idx')}: id {row.key!r} is not in the training data, whose rows are keyed "
                f"by {keyed_by}: the rationales would be paired with the wrong examples"
            )
        if not task_rules(example.task).own_data:  # a task's labels are its own, checked when it was read
            continue
        if row.label is None:
            if numbered:
                raise DHRDInputError(
                    f"{where(path, row.row, 'label')}: missing: the training rows are keyed by {keyed_by}, which a "
                    "file numbered from 0 matches too (each rationale paired with the next row); give each line "
                    "its row's label (dhrd rationales writes it), or key the rows by an id column (--id-column)"
                )
            continue
        label = label_name(row.label)
        if label not in label_names:
            raise DHRDInputError(
                f"{where(path, row.row, 'label')}: label {label!r} is not a training label "
                f"({', '.join(label_names)}): is this the rationale file of another data set?"
            )
        if label_names[example.label] != label:
            raise DHRDInputError(
                f"{where(path, row.row, 'label')}: says id {row.key!r} has label {label!r}, but that "
                f"training row's label is {label_names[example.label]!r}: is the file keyed by "
                f"something other than {keyed_by}?"
            )


def pair_rationales(
    examples: list[Example], by_task: dict[str, dict[str, str]], mode: str, seed: int
) -> list[tuple[str | None, int | None]]:
    """For each row: (rationale or None, index of the example whose label word ends the LM sequence or None
    for its own). The shuffles permute whole original examples, seeded, so rows of one example move together."""
    if mode not in RATIONALE_MODES:
        raise DHRDInputError(f"unknown rationale mode {mode!r}: choose from {', '.join(RATIONALE_MODES)}")
    keyed = {task: {id_key(k): v for k, v in found.items()} for task, found in by_task.items()}
    own = [keyed.get(e.task, {}).get(id_key(e.source_idx)) for e in examples]
    if mode == "only_label":
        return [(None, None)] * len(examples)
    if mode == "consistent":
        return [(r, None) for r in own]
    groups = list(dict.fromkeys(e.group for e in examples))
    first_row = {}
    for i, e in enumerate(examples):
        first_row.setdefault(e.group, i)
    rng = np.random.default_rng(seed)
    donors = _derangement(len(groups), rng)
    donor_of = {g: groups[d] for g, d in zip(groups, donors)}
    paired = []
    for e in examples:
        donor_row = first_row[donor_of[e.group]]
        rationale = own[donor_row]
        paired.append((rationale, donor_row if mode == "shuffle_both" else None))
    return paired


def _derangement(n: int, rng: np.random.Generator) -> list[int]:
    """A permutation with no fixed point (each example gets another's rationale)."""
    if n < 2:
        return list(range(n))
    while True:
        order = rng.permutation(n)
        if not np.any(order == np.arange(n)):
            return order.tolist()


# ------------------------------------------------------------------------------------------------ cache
class RationaleCache:
    """An append-only JSONL file of teacher rows for one (task or data file, teacher, prompt version).

    Every row is written whole, flushed and fsynced as soon as it is final, and never rewritten, so a run
    killed at any moment keeps every finished row and a rerun continues with the rest. A row torn by a
    kill (the last line, without its newline) is cut off before appending. Rows of another teacher or
    prompt version, and ids the data does not have, are refused instead of being mixed in."""

    def __init__(self, path: str | Path, teacher: str, prompt_id: str, known_ids: set | None = None):
        self.path = Path(path)
        self.teacher, self.prompt_id = teacher, prompt_id
        self.rows: dict[str, dict] = {}  # keyed by the example id as text (``id_key``)
        self.torn = False
        if self.path.exists():
            self._load(known_ids)

    def _load(self, known_ids: set | None) -> None:
        known = None if known_ids is None else {id_key(k) for k in known_ids}
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # ``tail`` is empty when the file ends with a newline
        if tail.strip():
            try:
                json.loads(tail)
                complete.append(tail)  # a whole row that only lacks its newline
            except ValueError:
                self.torn = True
        for number, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DHRDInputError(f"{where(self.path, number)}: unreadable JSON in the cache") from None
            for name, expected in (("teacher", self.teacher), ("prompt_id", self.prompt_id)):
                if row.get(name) != expected:
                    raise DHRDInputError(
                        f"{where(self.path, number, name)}: made with {name} {row.get(name)!r}, not {expected!r}; "
                        "use another --output (rows of two teachers or prompts are never mixed)"
                    )
            if "idx" not in row:
                raise DHRDInputError(f"{where(self.path, number, 'idx')}: missing")
            if known is not None and id_key(row["idx"]) not in known:
                raise DHRDInputError(
                    f"{where(self.path, number, 'idx')}: id {row['idx']!r} is not in the data: "
                    "is this the cache of another task or file?"
                )
            self.rows[id_key(row["idx"])] = row

    def _repair(self) -> None:
        """Cut a torn last row (the one in flight when a run was killed) and end the file with a newline."""
        raw = self.path.read_bytes()
        if not raw or raw.endswith(b"\n"):
            return
        cut = raw.rfind(b"\n") + 1
        with self.path.open("r+b") as handle:
            if self.torn:
                logger.warning("%s: cut a torn last row left by an interrupted run; it is made again", self.path)
                handle.truncate(cut)
            else:
                handle.seek(0, 2)
                handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.torn = False

    def __contains__(self, idx: int | str) -> bool:
        return id_key(idx) in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def open(self) -> RationaleCache:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._repair()
        self._handle = self.path.open("ab", buffering=0)  # unbuffered: a failed write is cut back at once
        return self

    def append(self, row: dict) -> None:
        """Write one whole row and fsync it. A write that fails (a full disk) is cut back to the rows before,
        so the file stays readable, and stops the run with one line."""
        row = {**row, "teacher": self.teacher, "prompt_id": self.prompt_id}
        data = memoryview((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        fd = self._handle.fileno()
        start = os.fstat(fd).st_size
        try:
            while data:
                data = data[self._handle.write(data) :]
            os.fsync(fd)
        except OSError as error:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise DHRDInputError(
                f"{self.path}: could not write ({error.strerror or error}); the {len(self.rows)} rows before are "
                "kept: free some space and run the same command again to continue"
            ) from None
        self.rows[id_key(row["idx"])] = row

    def close(self) -> None:
        if getattr(self, "_handle", None):
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RationaleCache:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
