"""Whether two finished study cells are the same model: their scored probabilities compared row by row.

Each cell is a run directory of a study (its ``scored.json``) or a kept cell, ``RESULTS.cells.json:CELL`` (the
cell as ``variants_study.py`` keeps it beside its tables, after its run directory is gone). Prints the largest
probability difference and the share of rows whose predicted class differs, and writes them as JSON with ``--out``.

Why: an auto run that chose pooled trains a pooled model with the same seed and settings; it should be the pooled
cell it is paired with, bit for bit, and when it is not, the difference between their scores is not auto's.

    python scripts/same_model.py runs/comve-5000/n5000-e1-lr0.0003-auto-linear-s1 \
        results/comve-5000-smollm2-cpu.cells.json:n5000-e1-lr0.0003-pooled-linear-s1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dhrd.errors import DHRDInputError, exit_on_input_error
from dhrd.runtime import write_json_atomic


def scored(cell: str) -> dict:
    """The ids and probabilities of a run directory's scored.json, or of a kept cell (``FILE:CELL``)."""
    path = Path(cell)
    if path.is_dir():
        target = path / "scored.json"
        if not target.is_file():
            raise DHRDInputError(f"{cell}: not a finished cell (no scored.json)")
        return json.loads(target.read_text())
    file, _, name = cell.rpartition(":")
    if not file or not Path(file).is_file():
        raise DHRDInputError(f"{cell}: neither a run directory nor FILE.cells.json:CELL")
    kept = json.loads(Path(file).read_text())
    if name not in kept:
        raise DHRDInputError(f"{cell}: {file} keeps no cell {name}")
    return kept[name]


def compare(a: dict, b: dict) -> dict:
    if a["ids"] != b["ids"]:
        raise DHRDInputError("the two cells scored different rows")
    pa, pb = np.asarray(a["probs"]), np.asarray(b["probs"])
    return {
        "rows": len(a["ids"]),
        "max_probability_difference": float(np.abs(pa - pb).max()),
        "predictions_that_differ": int((pa.argmax(-1) != pb.argmax(-1)).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="a run directory, or RESULTS.cells.json:CELL")
    parser.add_argument("second")
    parser.add_argument("--out", help="write the comparison here as JSON")
    options = parser.parse_args()
    found = {"first": options.first, "second": options.second, **compare(scored(options.first), scored(options.second))}
    same = found["max_probability_difference"] == 0.0
    print(
        f"{found['rows']} rows: largest probability difference {found['max_probability_difference']:.6f}, "
        f"predictions that differ: {found['predictions_that_differ']} ({'the same' if same else 'not the same'} model)"
    )
    if options.out:
        write_json_atomic(Path(options.out), {**found, "same_model": same})


if __name__ == "__main__":
    exit_on_input_error(main, "same_model")
