"""Rationales the user already has (CSV/JSONL) copied into the cache, matched by example id: never paired with
the wrong example."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..data.rationales import RationaleCache
from ..data.tables import id_key, is_missing, iter_table
from ..errors import DHRDInputError, where
from .asking import RunSummary, cache_row
from .prompts import TeacherItem, check_output


def import_rationales(
    source: str | Path,
    items: Sequence[TeacherItem],
    answers: Sequence[str],
    cache: RationaleCache,
    id_column: str = "idx",
    rationale_column: str = "rationale",
    policy: str = "keep",
    checks: Iterable[str] = ("empty", "repetitive", "leak"),
    encoding: str | None = None,
    keyed_by: str = "their idx",
    label_name=id_key,
) -> RunSummary:
    """Copy a file of rationales the user already has into ``cache``, matched by example id. There is no
    teacher to ask again, so ``retry`` keeps what it can (like ``keep``); ``drop`` drops flagged rows.
    ``label_name`` reads the file's ``label`` values as the items' label names (``Columns.label_name``)."""
    source = Path(source)
    by_id = {id_key(item.idx): item for item in items}
    labels = {item.label for item in items}
    summary = RunSummary(examples=len(items))
    start = time.perf_counter()
    with cache:
        for number, row in iter_table(source, encoding):
            for name in (id_column, rationale_column):
                if name not in row:
                    raise DHRDInputError(f"{where(source, number, name)}: missing column")
            idx = "" if is_missing(row[id_column]) else id_key(row[id_column])
            if idx not in by_id:
                raise DHRDInputError(
                    f"{where(source, number, id_column)}: id {idx!r} is not in the data (its rows are keyed by "
                    f"{keyed_by}): the rationale would be paired with the wrong example"
                )
            if idx in cache:
                summary.already_cached += 1
                continue
            item = by_id[idx]
            said = row.get("label")
            said = None if is_missing(said) else label_name(said)
            if said in labels and said != item.label:
                raise DHRDInputError(
                    f"{where(source, number, 'label')}: says id {idx!r} has label {said!r}, but the data "
                    f"says {item.label!r}: is the file keyed by something other than {keyed_by}?"
                )
            text = row[rationale_column]
            checked = check_output(text if isinstance(text, str) else None, item, answers, sentinel="\0", checks=checks)
            outcome = (
                "ok" if not checked.problems else ("dropped" if policy == "drop" or not checked.rationale else "kept")
            )
            cache.append(cache_row(item, checked, None, outcome, 0, answers) | {"output": text})
            summary.written += 1
            summary.outcomes[outcome] += 1
            summary.final_problems.update(checked.problems)
    summary.seconds = time.perf_counter() - start
    return summary


def import_identity(source: str | Path, encoding: str | None = None) -> tuple[str, str]:
    """The teacher and prompt id an imported file declares in its first row (the reference set does), or a
    name made from the file."""
    first = next((row for _, row in iter_table(source, encoding)), {})
    teacher = first.get("teacher") or f"import:{Path(source).stem}"
    return str(teacher), str(first.get("prompt_id") or "imported")
