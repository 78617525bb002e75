"""Export a SuperGLUE task as plain CSV files shaped like most public labelled sets: one row per example,
an id, the text columns, and integer labels (the Hugging Face ``super_glue`` numbering). It stands for "your
own data" in the README's walkthrough and in the own-data measurements, with the label names a user would
pass (``--label-names``) printed at the end.

    python scripts/superglue_to_csv.py --task cb --output data/cb-csv
"""

from __future__ import annotations

import argparse
import csv
import shlex
from pathlib import Path

from dhrd.data.task_splits import read_records
from dhrd.data.tasks import TASKS
from dhrd.runtime import atomic_file

# The text columns each exported task keeps, and its question as a user would state it (--instruction).
EXPORTS = {
    "cb": (("premise", "hypothesis"), "Does the premise entail the hypothesis, contradict it, or neither?"),
    "rte": (("premise", "hypothesis"), "Does the premise entail the hypothesis?"),
    "boolq": (("passage", "question"), "Is the answer to the question yes or no, according to the passage?"),
}
SPLITS = {"train": "train", "validation": "val"}


def export(task: str, output: Path, data_dir: str | None = None) -> dict[str, Path]:
    columns, _ = EXPORTS[task]
    labels = TASKS[task].native_labels
    output.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, official in SPLITS.items():
        records, _ = read_records(TASKS[task], official, data_dir)
        path = output / f"{split}.csv"
        with atomic_file(path) as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", *columns, "label"])
            for record in records:
                gold = record["label"]
                gold = str(gold).lower() if isinstance(gold, bool) else gold  # BoolQ: true/false
                writer.writerow([record["idx"], *(record[c].strip() for c in columns), labels.index(gold)])
        written[split] = path
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(EXPORTS), default="cb")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--data-dir", default=None, help="SuperGLUE folder [default: ../shared/data/superglue]")
    options = parser.parse_args()
    written = export(options.task, options.output, options.data_dir)
    columns, instruction = EXPORTS[options.task]
    names = ",".join(f"{i}={name}" for i, name in enumerate(TASKS[options.task].native_labels))
    for split, path in written.items():
        print(f"{split}: {path}")
    print(
        "describe it to dhrd with: "
        + shlex.join(
            ["--text-column", columns[0], "--text-pair-column", columns[1], "--id-column", "id"]
            + ["--label-names", names, "--instruction", instruction]
        )
    )


if __name__ == "__main__":
    main()
