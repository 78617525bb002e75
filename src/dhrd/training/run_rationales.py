"""The reasoning head's targets (``--method dhrd``): each training row's rationale, from a rationale file, a
column of the training file or a given mapping, checked against the training rows' ids."""

from __future__ import annotations

import logging
from pathlib import Path

from ..data.inputs import DataSpec, add_reasoning_targets, file_rationales
from ..data.rationales import check_rationale_keys, pair_rationales, rationale_file, read_rationale_rows
from ..data.tables import id_key
from ..data.task_base import Task
from ..data.tasks import OWN_DATA, TASKS
from ..errors import DHRDInputError
from .training_args import DHRDTrainingArguments

logger = logging.getLogger(__name__)


def _why_none_paired(by_task: dict[str, dict[str, str]], train_rows) -> str:
    """Where rationales exist but none is for a row this run trains on, the likely reason: the teacher was asked
    about other rows (``dhrd rationales`` chose them with another validation split or sample)."""
    count = sum(len(found) for found in (by_task or {}).values())
    if not count:
        return ""
    return (
        f" ({count} rationales were read, none for the {len(train_rows)} rows this run trains on: make them with "
        "the rows' choice train makes, the same --validation-file or --validation-fraction, --subset-seed and "
        "--max-examples as --max-train-examples)"
    )


def add_rationales(args, spec, train_set, train_rows, all_train_rows, tokenizer, label_names, given=None) -> int:
    """For ``--method dhrd``: extend the training rows with their rationale and answer. Returns the number
    of rows left without a rationale. ``given``: a mapping row id -> rationale (DHRDTrainer's)."""
    if args.method != "dhrd":
        return 0
    by_task = _given_rationales(given, all_train_rows) if given is not None else None
    by_task = by_task or _load_rationales(args, spec, all_train_rows, label_names)
    paired = pair_rationales(train_rows, by_task, args.rationale_mode, args.seed)
    missing = add_reasoning_targets(
        train_set,
        train_rows,
        tokenizer,
        label_names,
        paired,
        args.max_rationale_tokens,
        args.lm_scope,
        args.rationale_mode,
    )
    if missing == len(train_rows):
        where = f"--rationale-column {spec.rationale_column}" if spec.rationale_column else "--rationales"
        raise DHRDInputError(
            f"no training example has a rationale: check {where}{_why_none_paired(by_task, train_rows)}"
        )
    if missing:
        logger.warning(
            "%d of %d training rows have no rationale: they train the classification head only",
            missing,
            len(train_rows),
        )
    return missing


def _given_rationales(given: dict, all_train_rows: list) -> dict[str, dict]:
    """A mapping row id -> rationale, checked against the training rows' ids (never paired silently with
    the wrong rows): their id column's values, else their 1-based row numbers."""
    known = {id_key(e.source_idx) for e in all_train_rows}
    unknown = [k for k in given if id_key(k) not in known]
    if unknown:
        raise DHRDInputError(
            f"rationales: {len(unknown)} ids are not training rows (first: {unknown[0]!r}); ids are the id "
            "column's values (args.id_column), else the 1-based row numbers"
        )
    tasks = {e.task for e in all_train_rows}
    return {task: {k: v for k, v in given.items() if v} for task in tasks}


def _load_rationales(
    args: DHRDTrainingArguments, spec: DataSpec, all_train_rows: list, label_names: tuple[str, ...]
) -> dict[str, dict[str, str]]:
    """``task -> example id -> rationale``, from the training file's own column or a rationale file whose ids
    are checked against the whole training split (never paired silently with the wrong rows)."""
    if args.rationale_mode == "only_label":
        return {}
    if spec.rationale_column:
        if args.rationales:
            raise DHRDInputError("give --rationale-column or --rationales, not both")
        column = file_rationales(spec.source("train"), spec.columns, spec.rationale_column, spec.encoding)
        return {OWN_DATA.name: column}
    found = {}
    for task in [TASKS[name] for name in spec.tasks] if spec.tasks else [OWN_DATA]:
        path, keyed_by = _rationale_path(args, spec, task)
        rows = read_rationale_rows(path, spec.encoding)
        task_rows = [e for e in all_train_rows if e.task == task.name]
        # rows carved out as the validation split are the file's rows too: checked, never trained on
        held = spec.carved_splits(tuple(label_names))[1] if task.own_data and spec.carves_validation else []
        check_rationale_keys(rows, task_rows + held, label_names, path, keyed_by, spec.columns.label_name)
        held_keys = {str(e.source_idx) for e in held}
        unused = sum(1 for r in rows if r.key in held_keys and r.rationale is not None)
        if unused:
            logger.warning(
                "%s: %d rationales are for rows of the validation split carved from the training file: not used "
                "(dhrd rationales with the same --validation-fraction and --subset-seed asks only about training "
                "rows)",
                path,
                unused,
            )
        found[task.name] = {r.key: r.rationale for r in rows if r.rationale is not None and r.key not in held_keys}
    return found


def _rationale_path(args: DHRDTrainingArguments, spec: DataSpec, task: Task) -> tuple[Path, str]:
    """A task's rationale file, and what its ids are: the user's rows' ids or numbers, or a task's idx."""
    if not task.own_data:
        path = rationale_file(args.rationales, task.name)
        if path is None:
            raise DHRDInputError(
                f"no rationales for task {task.name}: pass --rationales (a file or a folder of "
                "<Task>/train.jsonl), or run the teacher first"
            )
        return path, "the records' idx"
    if not args.rationales:
        raise DHRDInputError(
            "--method dhrd on your own files needs rationales: --rationale-column NAME (a column of the "
            "training file) or --rationales FILE (JSONL with idx and rationale, idx being the row's "
            "--id-column value or its 1-based row number)"
        )
    path = Path(args.rationales)
    if not path.is_file():
        raise DHRDInputError(f"{path}: rationale file not found")
    return path, f"their {spec.id_column!r} column" if spec.id_column else "their 1-based row number"
