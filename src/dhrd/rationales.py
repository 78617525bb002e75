"""Teacher rationales for training: read a rationale file (the reference set's or the teacher cache's
format, one JSON object per line with ``idx`` and ``rationale``) and pair rationales with examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import DHRDInputError, where
from .runtime import find_shared
from .tasks import TASKS, Example

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
        raise DHRDInputError(f"{path}: rationale file not found")
    return path if path.is_file() else None


def read_rationales(path: Path) -> dict[int, str]:
    """``idx -> rationale``. A torn last line (a writer killed mid-line) is skipped; any other bad line is
    an error naming its row."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rationales: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise DHRDInputError(f"{where(path, number)}: unreadable JSON") from None
        for name in ("idx", "rationale"):
            if name not in row:
                raise DHRDInputError(f"{where(path, number, name)}: missing")
        text = row["rationale"]
        if isinstance(text, str) and text.strip():
            rationales[int(row["idx"])] = text.strip()
    return rationales


def pair_rationales(
    examples: list[Example], by_task: dict[str, dict[int, str]], mode: str, seed: int
) -> list[tuple[str | None, int | None]]:
    """For each row: (rationale or None, index of the example whose label word ends the LM sequence or None
    for its own). The shuffles permute whole original examples, seeded, so rows of one example move together."""
    if mode not in RATIONALE_MODES:
        raise DHRDInputError(f"unknown rationale mode {mode!r}: choose from {', '.join(RATIONALE_MODES)}")
    own = [by_task.get(e.task, {}).get(e.source_idx) for e in examples]
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
