"""``datasets`` datasets as input: a ``save_to_disk`` directory or a hub name, read as the user's files are.

A split becomes a ``DatasetSplit``, which ``tables.iter_table`` reads like a file: rows numbered from 1 (the
number error messages give and rationales are keyed by), one Arrow slice at a time, so memory stays bounded
by a slice whatever the dataset holds (the Arrow data itself is memory-mapped, never copied into Python).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import DHRDInputError

logger = logging.getLogger(__name__)

SLICE_ROWS = 1024  # rows taken from Arrow into Python at a time
NO_LABEL = -1  # datasets' ClassLabel value for "no label" (hidden test labels)


def is_saved_dataset(name: str) -> bool:
    """A directory written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    path = Path(name)
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def dataset_name(name: str) -> str:
    """How a dataset is recorded with a model: a hub name as given, a local directory by its base name (an
    absolute path says nothing on another machine)."""
    path = Path(name)
    return path.resolve().name if path.is_dir() else name


def open_dataset(name: str, config: str | None = None):
    """``datasets.load_from_disk`` for a ``save_to_disk`` directory, else ``datasets.load_dataset(name,
    config)`` (a hub name, or a local folder of data files); every failure is one line naming the dataset."""
    import datasets

    if is_saved_dataset(name):
        if config:
            raise DHRDInputError(f"dataset {name}: a saved directory has no configurations: drop --dataset-config")
        try:
            return datasets.load_from_disk(name)
        except (OSError, ValueError) as error:
            raise DHRDInputError(f"dataset {name}: unreadable saved dataset ({_first_line(error)})") from None
    return _load_dataset(name, config)


@functools.lru_cache(maxsize=4)
def _load_dataset(name: str, config: str | None):
    """``load_dataset``, once per run: training reads the train split several times (labels, rows,
    rationales), and each call would ask the hub again. A saved directory is cheap to open (memory-mapped)."""
    import datasets

    try:
        return datasets.load_dataset(name, config)
    except (OSError, ValueError) as error:  # offline, unknown name or config (ConnectionError is an OSError)
        where = f"{name} (configuration {config})" if config else name
        raise DHRDInputError(
            f"dataset {where}: not a save_to_disk directory and could not be loaded with datasets.load_dataset "
            f"({_first_line(error)})"
        ) from None


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


class DatasetSplit:
    """One split of a dataset, read row by row like a file. ``split`` is None for a saved ``Dataset`` (a
    single split, used whatever split is asked for). ClassLabel columns keep their integers (``label_map``
    names them); their "no label" value -1 reads as a missing cell."""

    def __init__(self, name: str, split: str | None, dataset, config: str | None = None, positions=None):
        self.name, self.split, self.dataset, self.config = name, split, dataset, config
        self.positions: list[int] | None = positions  # the rows read (0-based, in order); None: all

    def subset(self, positions: Sequence[int]) -> DatasetSplit:
        """Only the rows at ``positions``, still numbered by their place in the split."""
        return DatasetSplit(self.name, self.split, self.dataset, self.config, sorted(positions))

    def __str__(self) -> str:  # the location every error message starts with
        return f"dataset {self.name}" + (f" split {self.split}" if self.split else "")

    def __len__(self) -> int:
        return self.dataset.num_rows if self.positions is None else len(self.positions)

    @property
    def stem(self) -> str:
        """A short name for folders (a teacher cache), as a file's stem is."""
        return dataset_name(self.name).replace("/", "--")

    def label_map(self, column: str) -> tuple[tuple[str, str], ...]:
        """``(value, name)`` of a ClassLabel column in label order (what ``--label-names`` would say); ()
        for any other column."""
        import datasets

        feature = self.dataset.features.get(column)
        if not isinstance(feature, datasets.ClassLabel):
            return ()
        return tuple((str(k), name) for k, name in enumerate(feature.names))

    def fingerprint(self) -> dict:
        """What identifies the rows read, for resuming a prediction: the Arrow files' names, sizes and times."""
        files = []
        for entry in self.dataset.cache_files:
            path = Path(entry["filename"])
            stat = path.stat()
            files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
        return {"dataset": self.name, "config": self.config, "split": self.split, "rows": len(self), "files": files}

    def rows(self) -> Iterator[tuple[int, dict]]:
        """``(row number, row)``, numbered from 1 by the row's place in the split, a slice at a time."""
        import datasets

        labels = [name for name, f in self.dataset.features.items() if isinstance(f, datasets.ClassLabel)]
        data = self.dataset if self.positions is None else self.dataset.select(self.positions)
        numbers = range(1, len(data) + 1) if self.positions is None else [p + 1 for p in self.positions]
        for start in range(0, len(data), SLICE_ROWS):
            block = data[start : start + SLICE_ROWS]
            for offset in range(len(next(iter(block.values()), []))):
                row = {name: values[offset] for name, values in block.items()}
                for name in labels:
                    if row[name] == NO_LABEL:
                        row[name] = None
                yield numbers[start + offset], row


def dataset_split(name: str, split: str, config: str | None = None) -> DatasetSplit:
    """The split ``split`` of a dataset. Following datasets' naming, splits are ``train``, ``validation`` and
    ``test``; where ``validation`` is asked for and the dataset has none, its ``test`` split is used (with a
    warning), as many hub datasets (imdb, ag_news) ship only train and test."""
    import datasets

    loaded = open_dataset(name, config)
    if isinstance(loaded, datasets.Dataset):
        return DatasetSplit(name, None, loaded, config)
    if not isinstance(loaded, datasets.DatasetDict):
        raise DHRDInputError(f"dataset {name}: a {type(loaded).__name__} cannot be read here: save a DatasetDict")
    if split not in loaded:
        if split == "validation" and "test" in loaded:
            logger.warning("dataset %s has no validation split: its test split is the validation split", name)
            split = "test"
        else:
            raise DHRDInputError(f"dataset {name}: no split {split!r} (its splits: {', '.join(loaded)})")
    return DatasetSplit(name, split, loaded[split], config)


__all__ = ["DatasetSplit", "dataset_name", "dataset_split", "open_dataset"]
