"""The rows a run trains and validates on: read (capped, sampled, or a validation split carved from the training
rows), encoded as model inputs with the reasoning head's targets, and the record of a carved validation split."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..data.inputs import DataSpec, bare_numbers, encode_examples
from ..data.selection import carve_split, sample_examples
from ..errors import DHRDInputError
from ..runtime import write_json_atomic
from .run_rationales import add_rationales
from .training_args import DHRDTrainingArguments

logger = logging.getLogger(__name__)


@dataclass
class RunRows:
    """The rows a run trains and validates on, and where they came from (``read_rows``)."""

    spec: DataSpec  # where the rows came from and how they are read (columns, label names)
    label_names: tuple[str, ...]
    all_train_rows: list  # the whole training split, which rationale files are checked against
    train_rows: list
    eval_rows: list
    validation_split: dict | None  # where a validation split carved from the training file came from
    test_rows: list = field(default_factory=list)  # --test-file's: scored once by the kept model

    @property
    def input_format(self) -> str:
        return self.spec.input_format


@dataclass
class EncodedRows:
    train_set: list[dict]  # with the reasoning targets of the rows that have a rationale (--method dhrd)
    eval_set: list[dict]
    rows_without_rationale: int


def read_rows(args: DHRDTrainingArguments, splits: dict | None = None) -> RunRows:
    """The training and validation rows (capped, sampled, or the validation split carved from the training
    rows by --dev-fraction), with their labels checked."""
    spec = args.data_spec(splits)
    spec.validate()
    label_names = spec.label_names()
    if spec.own_data and args.lm_weight and bare_numbers(label_names):
        logger.warning(
            "the labels %s are bare numbers: the reasoning head learns to end with 'Final Answer: %s'. Name them "
            "with --label-names (for example %s)",
            ", ".join(label_names),
            label_names[-1],
            ",".join(f"{n}=<name>" for n in label_names),
        )
    subset_seed = args.seed if args.subset_seed is None else args.subset_seed
    # a dataset is read only as far as the caps need (DHRD checks its rationales against the whole split)
    train_cap = None if args.method == "dhrd" or args.selection == "first" else args.max_train_examples
    all_train_rows = spec.split("train", label_names, train_cap, subset_seed)
    train_rows = sample_examples(all_train_rows, args.max_train_examples, subset_seed, args.selection)
    validation_split = carved_validation_record(spec, label_names, all_train_rows)
    if args.dev_fraction:
        # the validation split is carved from the training rows: the reported split is never read
        train_rows, eval_rows = carve_dev_split(train_rows, args.dev_fraction, subset_seed)
    elif not args.reads_validation:
        eval_rows = []  # --skip-validation with no validation pass while training: scored on --test-file only
    else:
        eval_rows = sample_examples(
            spec.split("validation", label_names, args.max_eval_examples, subset_seed),
            args.max_eval_examples,
            subset_seed,
        )
    if any(e.label is None for e in train_rows + eval_rows):
        raise DHRDInputError("the train and validation splits must have labels")
    # capped as the validation split is: the same seeded sample of the file every run of a study scores on
    test_rows = spec.split("test", label_names) if spec.test_file else []
    test_rows = sample_examples(test_rows, args.max_eval_examples, subset_seed)
    rows = RunRows(spec, tuple(label_names), all_train_rows, train_rows, eval_rows, validation_split, test_rows)
    return rows


def encode_rows(args: DHRDTrainingArguments, rows: RunRows, tokenizer, given_rationales=None) -> EncodedRows:
    """The rows as model inputs under the length policy; with --method dhrd the training rows extended with
    their rationale and answer (the reasoning head's targets)."""
    train_set = encode_examples(rows.train_rows, tokenizer, args.max_length, args.truncation, "train split")
    eval_set = []  # none read (--skip-validation)
    if rows.eval_rows:
        eval_set = encode_examples(rows.eval_rows, tokenizer, args.max_length, args.truncation, "validation split")
    missing = add_rationales(
        args,
        rows.spec,
        train_set,
        rows.train_rows,
        rows.all_train_rows,
        tokenizer,
        rows.label_names,
        given_rationales,
    )
    return EncodedRows(train_set, eval_set, missing)


def carve_dev_split(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """The alpha search's seeded, stratified dev split and the rows left to train on (``selection.carve_split``)."""
    return carve_split(rows, fraction, seed, "--dev-fraction")


VALIDATION_SPLIT_FILE = "validation-split.json"


def carved_validation_record(spec: DataSpec, label_names, train_rows: list) -> dict | None:
    """Where a validation split carved from the training file came from and which rows it holds (their ids),
    so that a run can be reproduced and a resumed one checked to carve the same rows; None for a given one."""
    if not spec.carves_validation:
        return None
    held = spec.carved_splits(tuple(label_names))[1]
    counts = {name: sum(e.label == k for e in held) for k, name in enumerate(label_names)}
    logger.warning(
        "validation split: %d of %d rows of %s (--validation-fraction %g, seeded by --subset-seed %d, stratified: "
        "%s), never trained on; their ids are in %s",
        len(held),
        len(held) + len(train_rows),
        spec.train_file,
        spec.validation_fraction,
        spec.validation_seed,
        ", ".join(f"{n} {name}" for name, n in counts.items()),
        VALIDATION_SPLIT_FILE,
    )
    return {
        "carved_from": spec.train_file,
        "validation_fraction": spec.validation_fraction,
        "seed": spec.validation_seed,
        "keyed_by": spec.id_column or "row number",
        "train_rows": len(train_rows),
        "validation_rows": len(held),
        "validation_labels": counts,
        "validation_ids": [e.source_idx for e in held],
    }


def record_validation_split(output: Path, record: dict | None, resuming: bool) -> None:
    """Write the carved split's record; a resumed run must have carved the same rows (the file unchanged)."""
    path = output / VALIDATION_SPLIT_FILE
    if record is None:
        return
    if resuming and path.is_file():
        earlier = json.loads(path.read_text())
        if earlier.get("validation_ids") != record["validation_ids"]:
            raise DHRDInputError(
                f"{path}: this run's validation split was carved from other rows than {record['carved_from']} "
                "gives now (has the file changed?); use another --output-dir, or --restart to train again"
            )
    write_json_atomic(path, record)
