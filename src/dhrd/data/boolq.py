"""BoolQ, the one task whose splits may have to be made: with only the official ``val.jsonl`` at hand and no
hub, train and validation are carved out of it by passage title, and its figures are flagged as not comparable
to the paper's (``boolq_carved``, ``BOOLQ_CARVE_NOTE``).

The task and its carve share a module because the task's ``not_comparable`` asks the carve and the carve reads
the task's files: apart, each would import the other."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DHRDInputError, where
from .superglue_files import SPLIT_FILES, default_data_dir, hub_records, read_jsonl
from .superglue_records import boolq_question, record_text, truth_label
from .task_base import YES_NO_ANSWERS, TrueFalseTask

logger = logging.getLogger(__name__)


class BoolQ(TrueFalseTask):
    """A passage and a yes/no question about it. Its scores are not comparable to the paper's where its splits
    are carved out of the validation file."""

    required = ("question", "passage")

    def not_comparable(self, data_dir: str | Path | None = None) -> str | None:
        return BOOLQ_CARVE_NOTE if boolq_carved(data_dir) else None

    def yes_no_parts(self, record: dict) -> tuple[str, str]:
        return record["passage"], boolq_question(record["question"])

    def native_text(self, record: dict) -> str:
        return f"Passage: {record['passage'].strip()}\nQuestion: {boolq_question(record['question'])}"

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        fields = {
            "passage": record_text(record, "passage", source, row),
            "question": boolq_question(record_text(record, "question", source, row)),
        }
        return truth_label(gold), f"Passage: {fields['passage']}\nQuestion: {fields['question']}", fields


# ``TASKS["boolq"]``: made here, beside the carve that reads its files, and listed in ``tasks.TASKS``
BOOLQ = BoolQ("boolq", "BoolQ", ("false", "true"), ("accuracy",), dict(YES_NO_ANSWERS))


BOOLQ_HELD_OUT = 1000  # the least number of rows the carved validation split gets
BOOLQ_CARVE_NOTE = (
    "BoolQ's train split is not available here, so its train and validation splits were carved out of the "
    "official validation file by passage title: BoolQ figures are not comparable to the paper's."
)
_CARVE_TAG = "[carved BoolQ train/validation split, not comparable to the paper]"
_carve_warned: set[str] = set()


def _boolq_val_only(base: Path) -> bool:
    folder = base / BOOLQ.folder
    return (folder / SPLIT_FILES["validation"]).is_file() and not (folder / SPLIT_FILES["train"]).is_file()


@functools.lru_cache(maxsize=1)
def _hub_boolq_train() -> tuple[list[dict], str] | None:
    """The hub's BoolQ train split, or None where the hub cannot give it. Asked once per process, so the
    train and validation splits always agree on whether BoolQ is carved (a carved train split must never
    meet the whole validation file)."""
    try:
        return hub_records(BOOLQ, "train", None)
    except DHRDInputError:
        return None


def boolq_carved(data_dir: str | Path | None = None) -> bool:
    """Whether BoolQ's train and validation splits are carved out of ``val.jsonl`` for this data directory:
    it has ``BoolQ/val.jsonl`` but no ``BoolQ/train.jsonl``, and the hub cannot give the train split."""
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    return base is not None and _boolq_val_only(base) and _hub_boolq_train() is None


def _boolq_title(record: dict, path: Path, row: int) -> str:
    passage = record.get("passage")
    if not isinstance(passage, str) or " -- " not in passage:
        raise DHRDInputError(
            f"{where(path, row, 'passage')}: expected 'title -- passage' (the official format) to carve BoolQ by title"
        )
    return passage.split(" -- ", 1)[0]


def carve_boolq(records: list[dict], path: Path) -> tuple[list[dict], list[dict]]:
    """(train, validation) out of BoolQ's validation records, split by passage title so no title is in both:
    titles in a seeded shuffle go to validation until it has ``BOOLQ_HELD_OUT`` rows, the rest to train."""
    titles = [_boolq_title(record, path, row) for row, record in enumerate(records, start=1)]
    unique = sorted(set(titles))
    counts = Counter(titles)
    held, size = set(), 0
    for k in np.random.default_rng(0).permutation(len(unique)):
        if size >= BOOLQ_HELD_OUT:
            break
        held.add(unique[k])
        size += counts[unique[k]]
    train = [r for r, t in zip(records, titles) if t not in held]
    validation = [r for r, t in zip(records, titles) if t in held]
    return train, validation


def _carved_boolq(base: Path, split: str) -> tuple[list[dict], str]:
    path = base / BOOLQ.folder / SPLIT_FILES["validation"]
    train, validation = carve_boolq(read_jsonl(path), path)
    if str(path) not in _carve_warned:
        _carve_warned.add(str(path))
        logger.warning(
            "BoolQ: no train split (not in %s, not from the hub): carved %d train / %d validation rows out of %s "
            "by passage title; BoolQ figures are not comparable to the paper's",
            base,
            len(train),
            len(validation),
            path,
        )
    return (train if split == "train" else validation), f"{path} {_CARVE_TAG}"


def boolq_split(base: Path, split: str) -> tuple[list[dict], str] | None:
    """BoolQ's train or validation records where ``base`` has only ``BoolQ/val.jsonl``: train from the hub,
    or else both carved out of ``val.jsonl``; None where the split is read as any task's is."""
    if not _boolq_val_only(base):
        return None
    hub = _hub_boolq_train()
    if hub is None:
        return _carved_boolq(base, split)
    if split == "train":
        return [dict(row) for row in hub[0]], hub[1]
    return None
