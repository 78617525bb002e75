"""What ``dhrd rationales`` prints at its end (or an interrupted run had done): the summary table, and the
``dhrd train`` commands that use the cache, as they run when pasted."""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.table import Table

from .printing import out


def print_rationales_summary(path: Path, summary: dict, prefix: str = "") -> None:
    """The end-of-run table of ``dhrd rationales`` (also what an interrupted run had done)."""
    table = Table(title=f"{prefix}rationales - {summary['teacher']} / {summary['prompt_id']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in (
        "examples",
        "already_cached",
        "written",
        "outcomes",
        "problems_in_written_rows",
        "retries",
        "teacher_agreement",
        "rows_per_second",
        "generated_tokens_per_second",
        "rationales_in_cache",
        "torn_row_removed",
    ):
        table.add_row(key, str(summary[key]))
    if summary["max_examples"]:
        cap = f"--max-examples {summary['max_examples']}, --selection {summary['selection']}"
        cap += f", --subset-seed {summary['subset_seed']}" if summary["selection"] == "seeded" else ""
        table.add_row("selected_examples", f"{summary['selected_examples']} ({cap})")
    out.print(table)
    if prefix:
        record = path.with_name("train.summary.json")
        out.print(f"{prefix}{summary['rows_in_cache']} rows in {path}; its summary: {record}")


def train_commands(cache: Path, train_file: Path | None, given: dict, summary: dict) -> list[str]:
    """The ``dhrd train`` that uses a rationale cache, as it runs when pasted: a task's reads the folder of
    <Task>/train.jsonl, a file's (or dataset's) the cache file itself, with the options that describe the file
    and hold out the same validation rows. Where the teacher explained a capped subset, a second command trains
    on those rows only (the first trains on every training row; rows without a rationale train the classifier
    only)."""
    if given.get("dataset"):
        words = ["dhrd", "train", "--dataset", given["dataset"]]
        words += ["--dataset-config", given["dataset_config"]] if given.get("dataset_config") else []
    elif train_file is None:
        words = ["dhrd", "train", "--task", summary.get("task") or given.get("task") or "cb"]
    else:
        words = ["dhrd", "train", "--train-file", str(train_file)]
    defaults = {"text_column": "text", "label_column": "label", "encoding": "utf-8"}
    options = ["text_column", "text_pair_column", "label_column", "id_column", "label_names", "instruction"]
    options += ["encoding", "validation_file", "validation_fraction"]
    for option in options:
        if given.get(option) not in (None, defaults.get(option)):
            words += ["--" + option.replace("_", "-"), str(given[option])]
    seed = summary.get("subset_seed") if summary.get("subset_seed") is not None else given.get("subset_seed")
    if seed not in (None, 42) and (train_file is not None or summary.get("max_examples")):
        words += ["--subset-seed", str(seed)]  # it seeds the held-out validation rows and the capped sample
    rationales = str(cache) if train_file is not None or given.get("dataset") else str(cache.parent.parent)
    words += ["--method", "dhrd", "--rationales", rationales]
    commands = [shlex.join(words)]
    if summary.get("max_examples"):
        capped = words + ["--max-train-examples", str(summary["max_examples"])]
        capped += ["--selection", "first"] if summary.get("selection") == "first" else []
        commands.append(shlex.join(capped))
    return commands
