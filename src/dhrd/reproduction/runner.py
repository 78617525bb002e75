"""The resumable runner: the plan of cells, which of them have finished, and the run that does the rest and
rewrites the tables after every cell."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..data.tasks import task_rules
from ..memory import release_memory, rss_gb
from ..provenance import provenance
from .arguments import ReproduceArguments
from .cells import (
    cot_cell,
    existing_rationales,
    own_data_qps_cell,
    qps_cell,
    rationale_source,
    run_dir,
    train_cell,
    training_arguments,
)
from .methods import METHOD_RULES
from .own_data import scored_result
from .report import write_results
from .result import ReproduceResult
from .summary import summarise


@dataclass
class Cell:
    kind: str  # rationales | train | cot | qps
    task: str
    method: str | None = None
    seed: int | None = None

    @property
    def name(self) -> str:
        parts = [self.kind, self.task, self.method, None if self.seed is None else f"s{self.seed}"]
        return " ".join(p for p in parts if p)


def plan(args: ReproduceArguments) -> list[Cell]:
    """Seed by seed, so that a run stopped early still has a full-width table of its first seeds; the
    benchmark of a task follows its first seed's models."""
    cells: list[Cell] = []
    if any(METHOD_RULES[m].needs_rationales for m in args.methods):
        cells += [Cell("rationales", task) for task in args.tasks]
    for k, seed in enumerate(args.seeds):
        for task in args.tasks:
            for method in args.methods:
                rules = METHOD_RULES[method]
                if rules.skip_reason(task_rules(task)):  # said in the tables
                    continue
                if rules.trained:
                    cells.append(Cell("train", task, method, seed))
                if rules.decodes(task_rules(task).zero_shot_cot, first_seed=k == 0):
                    cells.append(Cell("cot", task, method, seed))
            if k == 0 and args.qps:
                cells.append(Cell("qps", task))
    return cells


def cell_finished(args: ReproduceArguments, cell: Cell) -> bool:
    """Whether a cell's result file exists (a teacher cache counts as finished: reading it runs nothing
    unless the teacher must write more, which ``--tables-only`` leaves to a real run)."""
    if cell.kind == "rationales":
        return True  # only looked up (existing_rationales), never made, under --tables-only
    if cell.kind == "train":
        return (run_dir(args, cell.task, cell.method, cell.seed) / "metrics.json").is_file()
    if cell.kind == "cot":
        return (run_dir(args, cell.task, cell.method, cell.seed) / "cot-eval.json").is_file()
    return (Path(args.output_dir) / cell.task / "qps.json").is_file()


# ------------------------------------------------------------------------------------------------- run


def announce(line: str, progress: bool) -> None:
    if progress:
        print(line, file=sys.stderr, flush=True)


def reproduce(args: ReproduceArguments, progress: bool = True, on_cell: Callable | None = None) -> ReproduceResult:
    """Run every unfinished cell of the plan and write the tables after each one."""
    args.validate()
    began = time.perf_counter()
    # the command that made the cells: a --tables-only pass only rewrites their tables
    result = ReproduceResult(asdict(args), provenance=provenance(drop=("--tables-only",)))
    results_dir = Path(args.results_dir or args.output_dir)
    earlier = results_dir / "results.json"
    before = json.loads(earlier.read_text()) if earlier.is_file() and not args.restart else {}
    spent = before.get("seconds", 0.0)
    timed = {name: cell.get("cell_seconds") for name, cell in before.get("cells", {}).items()}
    cells = plan(args)
    sources: dict[str, str | None] = {task: None for task in args.tasks}
    # A line per cell, not a bar: each cell shows its own bars (training, scoring, decoding), and a bar
    # around them was redrawn half-way through theirs.
    for number, cell in enumerate(cells, 1):
        start = time.perf_counter()
        # under --restart only the teacher cache is reused: every other cell runs again
        done_before = cell_finished(args, cell) and not (args.restart and cell.kind != "rationales")
        if args.tables_only and not done_before:
            continue
        announce(f"[{number}/{len(cells)}] {cell.name}" + (" (already done)" if done_before else ""), progress)
        if cell.kind == "rationales" and args.tables_only:
            sources[cell.task] = existing_rationales(args, cell.task)
            continue
        if cell.kind == "rationales":
            sources[cell.task], result.rationales[cell.task] = rationale_source(args, cell.task, progress)
            continue
        if cell.kind == "train":
            rationales = sources[cell.task] if METHOD_RULES[cell.method].needs_rationales else None
            output = training_arguments(args, cell.task, cell.method, cell.seed, rationales)
            value = scored_result(args, cell.task, train_cell(output))
        elif cell.kind == "cot":
            value = cot_cell(args, cell.task, cell.method, cell.seed, sources[cell.task])
        elif task_rules(cell.task).own_data:  # no SuperGLUE benchmark: its classifiers, timed alike
            value = own_data_qps_cell(args, cell.task, sources[cell.task])
        else:
            value = qps_cell(args, cell.task, sources[cell.task])
        record = {"kind": cell.kind, "task": cell.task, "method": cell.method, "seed": cell.seed, "result": value}
        if not done_before:
            release_memory()  # what the cell freed goes back to the system before the next one starts
            # this process's resident memory after each cell: cells one after another must not pile up
            record["rss_after_cell_gb"] = rss_gb()
        # a cell finished by an earlier run keeps the time it took then, not the moment it takes to re-read it
        seconds = timed.get(cell.name) if done_before else None
        record["cell_seconds"] = seconds if seconds is not None else round(time.perf_counter() - start, 1)
        result.cells[cell.name] = record
        result.seconds = round(spent + time.perf_counter() - began, 1)
        result.summary = summarise(args, result)
        write_results(result, results_dir)
        if on_cell is not None:
            on_cell(cell, record)
        if not done_before:
            announce(f"[{number}/{len(cells)}] {cell.name}: done in {record['cell_seconds']:.0f} s", progress)
    result.finished = all(cell_finished(args, cell) for cell in cells)  # --tables-only skips unfinished ones
    result.seconds = round(spent + time.perf_counter() - began, 1)
    result.summary = summarise(args, result)
    write_results(result, results_dir)
    return result
