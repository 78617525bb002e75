"""Data: the user's own CSV/JSONL/Parquet files, the training and evaluation sets, tokenisation, collation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DHRDInputError, where
from .datasets_input import DatasetSplit, dataset_name, dataset_split
from .examples import Example
from .lengths import encode_within
from .selection import sample_positions
from .tables import check_encoding, id_key, is_missing, iter_table, table_source
from .task_splits import load_task_split
from .tasks import OWN_DATA, parse_task_names, task_rules

PAIR_SEPARATOR = "\n"


# ------------------------------------------------------------------------------------------- user files
@dataclass(frozen=True)
class Columns:
    """How a user's file becomes examples: its columns, what its label values mean, and the instruction each
    input ends with. Rows are keyed by ``id`` where it is given (the user's own ids), else by their 1-based
    row number, the number every error message uses."""

    text: str = "text"
    label: str = "label"
    text_pair: str | None = None
    id: str | None = None
    # (value in the file, label name) in the label order, from --label-names: "0" -> "negative"
    label_map: tuple[tuple[str, str], ...] = ()
    instruction: str | None = None  # the task's question, after the text (as SuperGLUE inputs end with theirs)

    def label_name(self, value) -> str:
        """A label cell as its label name: a named value's name; a name, or any label of an unnamed file, as is."""
        key = id_key(value)
        return dict(self.label_map).get(key, key)


def parse_label_map(value, source: str = "--label-names") -> tuple[tuple[str, str], ...]:
    """``"0=negative,1=positive"`` (or a mapping ``{0: "negative", 1: "positive"}``) as ordered
    ``(value, name)`` pairs; the order is the label order (the model's ``id2label``)."""
    if value is None or value == "" or value == ():
        return ()
    if isinstance(value, str):
        pairs = []
        for part in value.split(","):
            key, sep, name = part.partition("=")
            if not sep:
                raise DHRDInputError(
                    f"{source}: {part.strip()!r} has no '=': write value=name pairs, e.g. 0=negative,1=positive"
                )
            pairs.append((key, name))
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = [tuple(pair) for pair in value]
    pairs = [(id_key(key), str(name).strip()) for key, name in pairs]
    keys, names = [k for k, _ in pairs], [n for _, n in pairs]
    for key, name in pairs:
        if not key or not name:
            raise DHRDInputError(f"{source}: empty value or name in {key!r}={name!r}")
    for seen, what in ((keys, "value"), (names, "name")):
        repeated = sorted({x for x in seen if seen.count(x) > 1})
        if repeated:
            raise DHRDInputError(f"{source}: the {what} {repeated[0]!r} is given twice")
    for key, name in pairs:
        if name in keys and name != key:  # "0=1,1=0": a cell "1" would mean two labels
            raise DHRDInputError(f"{source}: the name {name!r} is also a value of another label")
    return tuple(pairs)


def bare_numbers(labels: tuple[str, ...]) -> bool:
    """Labels that are only integers ("0", "1"): they name nothing a teacher or a reasoning head can read."""
    return all(label.lstrip("-").isdigit() for label in labels)


def row_text(row: dict, columns: Columns, path: Path, number: int) -> str:
    """The classifier's input of a row: its text, its text pair after a newline, and the instruction after
    another; empty text is an error."""
    parts = []
    for name in [columns.text, columns.text_pair]:
        if name is None:
            continue
        if name not in row:
            raise DHRDInputError(f"{where(path, number, name)}: missing column (columns: {', '.join(map(str, row))})")
        value = row[name]
        if is_missing(value) or not str(value).strip():
            raise DHRDInputError(f"{where(path, number, name)}: empty text")
        parts.append(str(value).strip())
    if columns.instruction:
        parts.append(columns.instruction)
    return PAIR_SEPARATOR.join(parts)


class RowKeys:
    """The key of each row of one file: the user's id (unique, not empty) or the row number."""

    def __init__(self, path: Path, id_column: str | None, unique: bool = True):
        self.path, self.id_column, self.unique = path, id_column, unique
        self.seen: dict[str, int] = {}  # only where ids must be unique (training): prediction keeps no state

    def __call__(self, row: dict, number: int) -> int | str:
        if self.id_column is None:
            return number
        if self.id_column not in row:
            raise DHRDInputError(
                f"{where(self.path, number, self.id_column)}: missing id column (columns: {', '.join(map(str, row))})"
            )
        value = row[self.id_column]
        key = "" if is_missing(value) else id_key(value)
        if not key:
            raise DHRDInputError(f"{where(self.path, number, self.id_column)}: empty id")
        if self.unique:
            if key in self.seen:
                raise DHRDInputError(
                    f"{where(self.path, number, self.id_column)}: id {key!r} is also the id of row {self.seen[key]}"
                )
            self.seen[key] = number
        return key


def file_label_names(path: str | Path, columns: Columns, encoding: str | None = None) -> tuple[str, ...]:
    """The label set, read from the training file: the ``label_map``'s names in its order, else the file's
    labels sorted, numerically where all are integers."""
    unique = set()
    names = [name for _, name in columns.label_map]
    first = None  # (row, label) of the first label: the form (number or name) every other must have
    for number, row in iter_table(path, encoding):
        if columns.label not in row:
            raise DHRDInputError(f"{where(path, number, columns.label)}: missing column")
        if is_missing(row[columns.label]) or not id_key(row[columns.label]):
            raise DHRDInputError(f"{where(path, number, columns.label)}: empty label")
        label = columns.label_name(row[columns.label])
        if names and label not in names:
            given = ",".join(f"{k}={n}" for k, n in columns.label_map)
            raise DHRDInputError(
                f"{where(path, number, columns.label)}: label {label!r} has no name in --label-names {given}"
            )
        first = first or (number, label)
        if not names and bare_numbers((label,)) != bare_numbers((first[1],)):
            raise _mixed_forms(path, number, columns.label, label, first)
        unique.add(label)
    if len(unique) < 2:
        raise DHRDInputError(f"{where(path, None, columns.label)}: needs at least two labels, found {sorted(unique)}")
    if names:
        return tuple(names)
    return tuple(sorted(unique, key=int if bare_numbers(tuple(unique)) else str))


def _mixed_forms(path, number: int, column: str, label: str, first: tuple[int, str]) -> DHRDInputError:
    """Numbers and names in one label column (``1`` beside ``positive``) would train a class for each: refused."""
    forms = {True: "a number", False: "a name"}
    return DHRDInputError(
        f"{where(path, number, column)}: label {label!r} is {forms[bare_numbers((label,))]}, but row {first[0]}'s "
        f"label {first[1]!r} is {forms[bare_numbers((first[1],))]}: one column holds one form of its labels; "
        "say which number is which name with --label-names 0=<name>,1=<name>"
    )


def file_example(
    row: dict,
    number: int,
    key: int | str,
    path: Path,
    columns: Columns,
    label_names: tuple[str, ...] | None,
    require_labels: bool,
    train_file: str | Path | None = None,
) -> Example:
    """One row of a user file as an Example keyed by ``key``; its label must be one the training file has."""
    text = row_text(row, columns, path, number)
    label = None
    if require_labels or (columns.label in row and not is_missing(row[columns.label]) and str(row[columns.label])):
        if columns.label not in row:
            raise DHRDInputError(f"{where(path, number, columns.label)}: missing column")
        if is_missing(row[columns.label]) or not id_key(row[columns.label]):
            raise DHRDInputError(f"{where(path, number, columns.label)}: empty label")
        key_text = columns.label_name(row[columns.label])
        if label_names is not None:
            if key_text not in label_names:
                origin = f" in {train_file}" if train_file else ""
                raise DHRDInputError(
                    f"{where(path, number, columns.label)}: label {key_text!r} never appears in the training "
                    f"labels{origin} ({', '.join(label_names)})"
                )
            label = label_names.index(key_text)
    name = str(key)
    return Example(name, OWN_DATA.name, text, label, name, source_idx=key)


def load_file_examples(
    path: str | Path,
    columns: Columns,
    label_names: tuple[str, ...] | None,
    require_labels: bool = True,
    train_file: str | Path | None = None,
    encoding: str | None = None,
) -> list[Example]:
    """Rows of a user file (or a ``datasets`` split) as Examples, keyed by ``columns.id`` or the 1-based row
    number."""
    path = table_source(path)
    keys = RowKeys(path, columns.id)
    examples = [
        file_example(row, number, keys(row, number), path, columns, label_names, require_labels, train_file)
        for number, row in iter_table(path, encoding)
    ]
    if not examples:
        raise DHRDInputError(f"{path}: no rows")
    return examples


def file_rationales(path: str | Path, columns: Columns, rationale_column: str, encoding: str | None = None) -> dict:
    """``row key -> rationale`` from a column of the training file itself; empty cells are left out (those
    rows train the classification head only)."""
    path = table_source(path)
    keys = RowKeys(path, columns.id)
    found = {}
    for number, row in iter_table(path, encoding):
        key = keys(row, number)
        if rationale_column not in row:
            columns_found = ", ".join(map(str, row))
            raise DHRDInputError(f"{where(path, number, rationale_column)}: missing column (columns: {columns_found})")
        value = row[rationale_column]
        if not is_missing(value) and str(value).strip():
            found[str(key)] = str(value).strip()
    return found


# ---------------------------------------------------------------------------------------- data sources
DEFAULT_VALIDATION_FRACTION = 0.1  # of a training file given without a validation file


@dataclass
class DataSpec:
    """Where the data comes from: SuperGLUE task(s), the user's files, or a ``datasets`` dataset (a
    ``save_to_disk`` directory or a hub name, read as files are). Saved with the model, so that evaluation and
    prediction format inputs exactly as training did."""

    tasks: list[str] | None = None
    input_format: str = "yesno"
    data_dir: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None  # scored once after training, read with the same columns and labels
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    id_column: str | None = None  # the user's row ids (else rows are keyed by their 1-based number)
    rationale_column: str | None = None  # explanations in the training file itself
    encoding: str = "utf-8"  # of the user's files (a UTF-8 byte-order mark is always accepted)
    label_map: dict[str, str] | None = None  # the file's label values -> label names ("0" -> "negative")
    instruction: str | None = None  # the task's question, for the teacher and (by default) the student
    instruction_in_input: bool = False  # the student's input ends with the instruction (measured: it hurt)
    dataset: str | None = None  # a save_to_disk directory or a hub name: its train and validation splits
    dataset_config: str | None = None  # the hub dataset's configuration (load_dataset's second argument)
    # a training file without a validation file: this seeded, stratified fraction of its rows is the validation
    # split, never trained on (``selection.carve_split``, seeded by ``validation_seed``)
    validation_fraction: float | None = None
    validation_seed: int = 42
    # ``datasets.Dataset`` objects by split ("train", "validation"), handed to DHRDTrainer in memory; never saved
    splits: dict | None = field(default=None, repr=False)
    _carved: tuple | None = field(default=None, repr=False, compare=False)  # (train rows, validation rows)

    @property
    def carves_validation(self) -> bool:
        """The validation split is carved from the training file (no validation file was given)."""
        return bool(self.validation_fraction) and self.train_file is not None and self.validation_file is None

    def carved_splits(self, label_names: tuple[str, ...]) -> tuple[list[Example], list[Example]]:
        """The training file's rows left to train on and the rows carved out as the validation split: seeded by
        ``validation_seed`` and stratified by label, so every run (and a resumed one, and ``dhrd rationales``)
        carves the same rows from the same file."""
        if self._carved is None or self._carved[0] != label_names:
            from .selection import carve_split

            rows = load_file_examples(self.train_file, self.columns, label_names, True, self.train_file, self.encoding)
            kept, held = carve_split(rows, self.validation_fraction, self.validation_seed, "--validation-fraction")
            self._carved = (label_names, kept, held)
        return self._carved[1], self._carved[2]

    @property
    def own_data(self) -> bool:
        """The user's files or dataset (not SuperGLUE tasks)."""
        return self.train_file is not None or self.dataset is not None or bool(self.splits)

    def source(self, split: str):
        """Where a split's rows are read from: a file path, or a ``datasets`` split."""
        if self.splits:
            if self.splits.get(split) is None:
                raise DHRDInputError(f"no {split} dataset: pass {'train' if split == 'train' else 'eval'}_dataset")
            return DatasetSplit(in_memory_name(self.splits[split], split), split, self.splits[split])
        if self.dataset is not None:
            found = dataset_split(self.dataset, split, self.dataset_config)
            if found.split is None:
                raise DHRDInputError(
                    f"dataset {self.dataset}: a single Dataset, not a DatasetDict: training needs its train and "
                    "validation splits (save a DatasetDict with both)"
                )
            return found
        path = self.train_file if split == "train" else self.validation_file
        if path is None:
            raise DHRDInputError(
                f"no {split} file: pass --validation-file, or --validation-fraction to carve one from --train-file"
            )
        return path

    def rows_source(self, split: str):
        """The file (or ``datasets`` split) all of a split's rows are read from, numbered as training numbers
        them: a carved validation split's rows are the training file's."""
        if split == "test":
            if self.test_file is None:
                raise DHRDInputError("no test split: give a --test-file")
            return self.test_file
        if split == "validation" and self.carves_validation:
            return self.train_file
        return self.source(split)

    @property
    def columns(self) -> Columns:
        return Columns(
            self.text_column,
            self.label_column,
            self.text_pair_column,
            self.id_column,
            parse_label_map(self.label_map),
            self.instruction if self.instruction_in_input else None,
        )

    def validate(self) -> None:
        if not self.own_data and not self.tasks:
            raise DHRDInputError("give --task (a SuperGLUE task, a list, or 'all'), --train-file or --dataset")
        if self.own_data and self.tasks:
            raise DHRDInputError("give either --task, --train-file or --dataset, not two of them")
        if self.dataset is not None and (self.train_file or self.validation_file):
            raise DHRDInputError("give --dataset or --train-file/--validation-file, not both")
        if self.validation_fraction is not None:
            if not 0 < self.validation_fraction < 1:
                raise DHRDInputError(f"--validation-fraction must be between 0 and 1, not {self.validation_fraction}")
            if self.train_file is None:
                raise DHRDInputError("--validation-fraction carves a validation split from --train-file: give one")
            if self.validation_file is not None:
                raise DHRDInputError("give --validation-file or --validation-fraction, not both")
        if self.dataset is None and self.dataset_config:
            raise DHRDInputError("--dataset-config needs --dataset")
        own_only = (self.id_column, self.rationale_column, self.label_map, self.instruction, self.test_file)
        if not self.own_data and any(own_only):
            raise DHRDInputError(
                "--id-column, --rationale-column, --label-names, --instruction and --test-file are for your own "
                "files (--train-file or --dataset)"
            )
        if (
            self.dataset is not None or self.splits
        ) and not self.label_map:  # a ClassLabel names its values, in its order
            self.label_map = dict(self.source("train").label_map(self.label_column)) or None
        self.label_map = dict(parse_label_map(self.label_map)) or None  # saved as JSON: a plain mapping
        if self.instruction is not None:
            self.instruction = " ".join(self.instruction.split()) or None
        self.encoding = check_encoding(self.encoding)
        if self.tasks:
            self.tasks = parse_task_names(self.tasks)
            if len(self.tasks) > 1 and self.input_format != "yesno":
                raise DHRDInputError("a joint model over several tasks needs --input-format yesno (one label set)")

    def label_names(self) -> tuple[str, ...]:
        from .tasks import TASKS

        if self.own_data:
            return file_label_names(self.source("train"), self.columns, self.encoding)
        return TASKS[self.tasks[0]].label_names(self.input_format)

    def split(
        self, split: str, label_names: tuple[str, ...], max_examples: int | None = None, seed: int = 0
    ) -> list[Example]:
        """Rows of a split: ``train``, ``validation`` (the evaluation split) or ``test``. ``max_examples``
        reads from a dataset only the rows ``selection.sample_examples(rows, max_examples, seed)`` would keep
        (other sources are read whole: the caller samples)."""
        if self.own_data:
            if split == "test" and self.test_file is not None:
                return load_file_examples(self.test_file, self.columns, label_names, True, self.origin, self.encoding)
            if split not in ("train", "validation"):
                raise DHRDInputError(
                    f"a model trained on your own data has train and validation splits (and test with a "
                    f"--test-file), not {split!r}: use --file or --dataset"
                )
            if self.carves_validation:
                kept, held = self.carved_splits(label_names)
                return kept if split == "train" else held
            source = self.source(split)
            if isinstance(source, DatasetSplit) and max_examples and max_examples < len(source):
                source = source.subset(sample_positions(len(source), max_examples, seed))
            return load_file_examples(
                source, self.columns, label_names, True, self.origin or source.name, self.encoding
            )
        rows: list[Example] = []
        for task in self.tasks:
            rows.extend(load_task_split(task, split, self.input_format, self.data_dir))
        return rows

    @property
    def origin(self) -> str | None:
        """Where the label set comes from, as messages about a label the training data lacks name it."""
        return self.dataset or self.train_file

    def to_dict(self) -> dict:
        saved = {k: v for k, v in self.__dict__.items() if k not in ("splits", "_carved")}
        if self.splits:  # recorded by name, as a saved dataset directory is
            saved["dataset"] = in_memory_name(self.splits.get("train"), "train")
        if self.dataset is not None:  # a local directory by its name: its absolute path means nothing elsewhere
            saved["dataset"] = dataset_name(self.dataset)
        return saved


def in_memory_name(dataset, split: str) -> str:
    """How a ``datasets.Dataset`` given in memory is named in messages and saved settings."""
    info = getattr(dataset, "info", None)
    return getattr(info, "dataset_name", None) or f"{split}_dataset"


# ------------------------------------------------------------------------------------------ tokenising
def example_name(example: Example) -> str:
    """How a message names an example: a user file's row by its number or id, a task's by its id."""
    if not task_rules(example.task).own_data:
        return f"example {example.id}"
    key = example.source_idx
    return f"row {key}" if isinstance(key, int) else f"id {key!r}"


def encode_examples(examples: list[Example], tokenizer, max_length: int, truncation: str, source: str) -> list[dict]:
    """Features for the classifier: ``input_ids`` (under the length policy, ``lengths.encode_within``) and
    ``labels``."""
    names = [example_name(e) for e in examples]
    ids = encode_within([e.text for e in examples], tokenizer, max_length, truncation, source, names)
    features = []
    for example, input_ids in zip(examples, ids):
        feature = {"input_ids": input_ids}
        if example.label is not None:
            feature["labels"] = example.label
        features.append(feature)
    return features


# The paper's training suffix (Appendix E.2), as plain text: "Reasoning:\n{r}\nFinal Answer:\n{y}".
REASON_PREFIX = "\nReasoning:\n"
ANSWER_PREFIX = "\nFinal Answer:\n"


def add_reasoning_targets(
    features: list[dict],
    examples: list[Example],
    tokenizer,
    label_names: tuple[str, ...],
    paired: list[tuple[str | None, int | None]],
    max_rationale_tokens: int,
    lm_scope: str,
    mode: str,
) -> int:
    """Extend each input to ``[x, Reasoning:, r, Final Answer:, y, eos]`` for the reasoning head.

    The pieces are tokenised separately and their ids concatenated, so the ids of ``x`` are exactly an
    input-only pass's ids; ``pool_index`` marks the last of them. ``lm_labels`` are the ids, with -100 on ``x``
    when ``lm_scope == "reasoning"``. Rows with no rationale (in consistent or shuffled modes) keep only ``x``
    and no LM target: they still train the classification head. Returns how many rows that is.
    """
    missing = 0
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for feature, example, (rationale, label_from) in zip(features, examples, paired):
        x = feature["input_ids"]
        feature["pool_index"] = len(x) - 1
        if rationale is None and mode != "only_label":
            missing += 1
            feature["lm_labels"] = [-100] * len(x)
            continue
        label_word = label_names[examples[label_from].label if label_from is not None else example.label]
        reason = []
        if rationale is not None:
            reason = tokenizer(REASON_PREFIX + rationale, add_special_tokens=False)["input_ids"][:max_rationale_tokens]
        answer = tokenizer(ANSWER_PREFIX + label_word, add_special_tokens=False)["input_ids"] + eos
        ids = x + reason + answer
        feature["input_ids"] = ids
        feature["lm_labels"] = ([-100] * len(x) if lm_scope == "reasoning" else list(x)) + reason + answer
    return missing


class ClassificationCollator:
    """Pads each batch to its longest row (dynamic padding) on the right; the pooled position comes from
    the attention mask, so the pad token's identity never matters."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.tensor(feature["input_ids"], dtype=torch.long)
            attention_mask[row, :n] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        if "pool_index" in features[0]:
            batch["pool_index"] = torch.tensor([f["pool_index"] for f in features], dtype=torch.long)
        if "lm_labels" in features[0]:
            lm_labels = torch.full((len(features), width), -100, dtype=torch.long)  # padding never counts
            for row, feature in enumerate(features):
                lm_labels[row, : len(feature["lm_labels"])] = torch.tensor(feature["lm_labels"], dtype=torch.long)
            batch["lm_labels"] = lm_labels
        return batch
