"""Where a SuperGLUE task's files are: the official jsonl files under a data directory (``$DHRD_DATA_DIR`` or
the shared folder), or the hub's ``super_glue`` dataset in the same schema."""

from __future__ import annotations

from pathlib import Path

from ..errors import DHRDInputError
from ..runtime import find_shared
from . import tables
from .task_base import Task

SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "val": "val.jsonl", "test": "test.jsonl"}


def default_data_dir() -> Path | None:
    """``$DHRD_DATA_DIR`` or the shared ``data/superglue`` folder."""
    return find_shared(Path("data") / "superglue", "DHRD_DATA_DIR")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; a bad line is reported with its file and line number."""
    return tables.read_jsonl(path)


def hub_records(task: Task, split: str, base: Path | None) -> tuple[list[dict], str]:
    """A split from the hub, in the official jsonl schema, and where it came from; offline, an error that says
    to pass ``--data-dir``."""
    hub_split = "validation" if split == "val" else split
    try:
        from datasets import load_dataset

        dataset = load_dataset("super_glue", task.hub_config, split=hub_split)
    except Exception as error:  # the hub is unreachable offline; say what to do instead
        local = f"{base / task.folder / SPLIT_FILES[split]} does not exist and " if base is not None else ""
        raise DHRDInputError(
            f"{task.folder} {split} split: {local}the Hugging Face hub could not provide it "
            f"({type(error).__name__}); pass --data-dir with the official jsonl files"
        ) from None
    return task.from_hub([dict(row) for row in dataset]), f"hub:super_glue/{task.hub_config}/{hub_split}"
