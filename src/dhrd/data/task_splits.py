"""A task's split read: its official records (the data directory's jsonl files, else the hub; BoolQ perhaps
carved), and the classifier rows they become (``load_task_split``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DHRDInputError, where
from .boolq import boolq_split
from .examples import Example
from .superglue_files import SPLIT_FILES, default_data_dir, hub_records, read_jsonl
from .task_base import Task
from .tasks import TASKS, parse_task_names

INPUT_FORMATS = ("yesno", "native")


def read_records(task: Task, split: str, data_dir: str | Path | None = None) -> tuple[list[dict], str]:
    """The official records of one split: from ``<data_dir>/<Task>/<split>.jsonl`` when there is a data
    directory, else from the Hugging Face hub (``super_glue``). Returns the records and where they came from.
    BoolQ with only ``val.jsonl`` takes its train split from the hub, or else carves train and validation
    out of ``val.jsonl`` (see ``boolq_carved``)."""
    if split not in SPLIT_FILES:
        raise DHRDInputError(f"unknown split {split!r}: choose from train, validation, test")
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    if task.name == "boolq" and split != "test" and base is not None:
        records = boolq_split(base, split)
        if records is not None:
            return records
    if base is not None:
        path = base / task.folder / SPLIT_FILES[split]
        if path.is_file():
            return read_jsonl(path), str(path)
        if data_dir is not None:
            raise DHRDInputError(f"{path}: file not found ({task.folder} {split} split)")
    return hub_records(task, split, base)


def load_task_split(
    task_name: str, split: str, input_format: str = "yesno", data_dir: str | Path | None = None
) -> list[Example]:
    """The classifier rows of one split of one task."""
    if input_format not in INPUT_FORMATS:
        raise DHRDInputError(f"unknown input format {input_format!r}: choose from {', '.join(INPUT_FORMATS)}")
    task = TASKS[parse_task_names(task_name)[0]]
    records, source = read_records(task, split, data_dir)
    examples = []
    for row, record in enumerate(records, start=1):
        try:
            examples.extend(task.examples(record, input_format, source, row))
        except (KeyError, TypeError, AttributeError, IndexError) as error:
            # a field the checks above did not name (a WSC target without span indices, a non-text premise,
            # a MultiRC passage that is not an object): still one line naming the row, never a traceback
            raise DHRDInputError(f"{where(source, row)}: not a {task.folder} record ({_describe(error)})") from None
    if not examples:
        raise DHRDInputError(f"{source}: no examples")
    return examples


def _describe(error: Exception) -> str:
    return f"missing field {error.args[0]!r}" if isinstance(error, KeyError) else f"{type(error).__name__}: {error}"
