"""The rows a teacher is asked about: exactly those ``dhrd train`` trains on with the same settings (its carved
validation split left out, its ``--max-train-examples`` sample taken), and the record of which and why."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..data.datasets_input import DatasetSplit
from ..data.inputs import Columns
from ..data.tables import id_key
from ..errors import DHRDInputError
from .prompts import TeacherItem


def describe_ids(ids: Sequence, shown: int = 8) -> str:
    """A list of row ids as a person reads it: ``1, 2, 5, ..., 4997`` (the first ones and the last)."""
    ids = [str(i) for i in ids]
    if len(ids) <= shown:
        return ", ".join(ids)
    return ", ".join(ids[: shown - 1]) + ", ..., " + ids[-1]


def training_subset(
    items: list[TeacherItem],
    task: str | None,
    train_file: str | Path | None,
    columns: Columns,
    data_dir: str | Path | None,
    max_examples: int | None,
    subset_seed: int,
    encoding: str | None = None,
    validation_fraction: float | None = None,
    selection: str = "seeded",
) -> tuple[list[TeacherItem], int, dict]:
    """The items of the examples ``dhrd train`` trains on with the same settings, how many original examples
    that is, and a record of which rows they are and why. A training file given without a validation file
    has ``validation_fraction`` of its rows carved out as the validation split exactly as training carves it
    (seeded by ``subset_seed``, stratified): the teacher is never asked about them. ``max_examples`` then takes
    the rows ``--max-train-examples N --subset-seed S --selection first|seeded`` takes. Training's own rows and
    ``sample_examples`` pick them, and an item joins on the row's ``source_idx``, exactly as training joins
    rationales (``pair_rationales``)."""
    from ..data.inputs import DataSpec
    from ..data.selection import sample_examples

    if max_examples and subset_seed is None and selection == "seeded":  # a None seed: a fresh random subset
        raise DHRDInputError("--max-examples needs --subset-seed (dhrd train's default is its --seed, 42)")
    carving = bool(validation_fraction) and train_file is not None and not isinstance(train_file, DatasetSplit)
    if isinstance(train_file, DatasetSplit):  # training reads the same split of the same dataset
        spec = DataSpec(
            dataset=train_file.name,
            dataset_config=train_file.config,
            text_column=columns.text,
            text_pair_column=columns.text_pair,
            label_column=columns.label,
            id_column=columns.id,
            label_map=dict(columns.label_map) or None,
        )
    elif train_file is not None:
        spec = DataSpec(
            train_file=str(train_file),
            text_column=columns.text,
            text_pair_column=columns.text_pair,
            label_column=columns.label,
            id_column=columns.id,
            encoding=encoding,
            label_map=dict(columns.label_map) or None,
            validation_fraction=validation_fraction if carving else None,
            validation_seed=subset_seed if subset_seed is not None else 42,
        )
    else:
        # groups (what the cap counts) are the same in both input formats, so yesno stands for either
        spec = DataSpec(tasks=[task], data_dir=None if data_dir is None else str(data_dir))
    every = spec.split("train", spec.label_names())
    rows = sample_examples(every, max_examples, subset_seed, selection)
    keep = {id_key(row.source_idx) for row in rows}
    chosen = [item for item in items if id_key(item.idx) in keep]
    held = spec.carved_splits(spec.label_names())[1] if carving else []
    why = []
    if carving:
        why.append(
            f"{len(held)} rows ({validation_fraction:g}) are held out as the validation split, as dhrd train "
            f"carves it (--validation-fraction {validation_fraction:g}, --subset-seed {spec.validation_seed}), "
            "and never asked about"
        )
    groups = len({row.group for row in rows})
    if max_examples and len(rows) < len(every):
        how = (
            f"the first {max_examples} training rows in file order (--selection first)"
            if selection == "first"
            else f"a seeded sample of {max_examples} (--subset-seed {subset_seed})"
        )
        why.append(f"of the {len(every)} training rows, {how}, as dhrd train --max-train-examples {max_examples} takes")
    else:
        why.append(f"every training row ({groups})")
    record = {
        "selection_reason": "; ".join(why),
        "asked_ids": describe_ids([item.idx for item in chosen]),
        "held_out_for_validation": len(held),
    }
    return chosen, groups, record
