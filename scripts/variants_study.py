"""DHRD's settings against pooled, paired by seed on the same examples: where does DHRD pay off, and why did it hurt?

A study is one data source and its budgets (training rows, epochs, learning rate); its variants are trained with
the same seeds on the same rows and scored on the same split:
- a SuperGLUE task (`--task rte`): scored on the validation split, the last epoch kept (no choice is made on it);
- your own data through an own-data config (`--config examples/own-data/comve.yaml`: ComVE with its human
  explanations as rationales): scored on its `test_file` (else the test.jsonl beside the training file), the
  validation file only picking the epoch where there are several. No dataset-specific code.
Every cell is one `dhrd.train` run in `<runs>/<cell>`; a finished cell (its `scored.json`) is read back, a killed one
resumes from its checkpoint, and the tables are rewritten after every cell. Each finished cell's scored probabilities
and costs are also kept beside the tables (`<out>.cells.json`, committed with them), so the paired intervals survive the
loss of `<runs>` (a new checkout): a cell found there is not trained again. So are the commands that named them
(`<out>.commands.json`): the tables show each one that is still the last to name a cell of theirs, and run in that order
those rebuild the tables. An auto cell's search keeps its ended trials in `<out>.searches/<cell>.log`
(`--alpha-search-storage`, an optuna journal: commit it as trials land), so a search longer than a session, started
again in a new checkout, trains only the candidates that had not ended. Two studies may share `<runs>` (a task's fixed
settings and its auto, in two queues): each keeps from it only the cells its command names and the pooled cells of their
budgets and seeds; cells kept earlier (an earlier command's, same `--out`) stay.
Two queues may also run the same command (`--seeds 3,2,1` in one, `1,2,3` in the other): a cell is trained by the
process that holds its run directory's lock (`dhrd.training.run_lock`); the other moves on to the next cell.

    python scripts/variants_study.py --config examples/own-data/comve.yaml --sizes 1000 --variants pooled,dhrd
    python scripts/variants_study.py --task rte --lr 2e-4 --variants pooled,dhrd,dhrd-a0.25,dhrd-example
    python scripts/variants_study.py ... --render              # rewrite the tables from finished cells only
    python scripts/variants_study.py ... --variants auto-linear --pair-with results/fixed-study  # its pooled cells

A variant is `pooled`, or `dhrd` with optional `-a<alpha>`, `-reasoning` (`--lm-scope reasoning`) and `-example`
(`--lm-normalization example`), for example `dhrd-a0.25-reasoning`; or `auto` (`--alpha auto`). Every variant trains
the paper's MLP head (`--head mlp`, the default until this study chose linear) unless it ends in `-linear`
(`pooled-linear`, `dhrd-linear`, `auto-linear`: `--head linear`), so a variant means the same before and after.
Each variant's "minus pooled" is paired with pooled of its own head (what `--method pooled` gives beside it), or
with the other head's where a study has none (said beside the difference). `--grad-norms`
logs each loss term's gradient norm (two more backward passes a logging step: not for timing cells).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import yaml

from dhrd.openmp import passive_openmp_wait

# torch's threads sleep between operations instead of spinning, as under the dhrd command (dhrd.openmp): two threads
# beside other jobs took 134 s a step without it, 2.1 s with it; before the dhrd imports below load torch
passive_openmp_wait()
from dhrd.data.inputs import load_file_examples
from dhrd.data.task_metrics import floors
from dhrd.data.task_splits import load_task_split
from dhrd.errors import DHRDInputError, exit_on_input_error
from dhrd.memory import peak_rss_gb, reset_peak
from dhrd.provenance import command_line
from dhrd.runtime import write_json_atomic, write_text_atomic
from dhrd.stats import example_statistics, paired_difference, resampled_scores

TEST_FILE = "test.jsonl"  # an own-data study's scored split, beside its training file
DEFAULT_STUDENT = "SmolLM2-135M-Instruct"  # dhrd's default backbone, the student of every study without --backbone


class Refused(DHRDInputError):
    """A study's input that cannot be run (a variant, a study to pair with, tables it would replace): one line on
    standard error and exit code 2, as every dhrd command does."""


# a cell's peak_rss_scope: "cell" (its own), "process" (its study process's so far: an upper bound), or this (a run
# resumed from a checkpoint that kept no peak: the last process's only, a lower bound)
LAST_PROCESS = "last-process"
MARGIN = 5.0  # points above the majority floor that count as learning (as in the learning-budget study)


@dataclass(frozen=True)
class Cell:
    size: int | None  # training rows (None: all)
    variant: str
    seed: int
    epochs: float
    learning_rate: float

    @property
    def budget(self) -> str:
        return f"n{'all' if self.size is None else self.size}-e{self.epochs:g}-lr{self.learning_rate:g}"

    @property
    def name(self) -> str:
        return f"{self.budget}-{self.variant}-s{self.seed}"


def parse_cell(name: str) -> Cell | None:
    match = re.fullmatch(r"n(\d+|all)-e([0-9.]+)-lr([0-9.e-]+)-(.+)-s(\d+)", name)
    if not match:
        return None
    size = None if match.group(1) == "all" else int(match.group(1))
    return Cell(size, match.group(4), int(match.group(5)), float(match.group(2)), float(match.group(3)))


LINEAR = "-linear"


def variant_settings(variant: str) -> dict:
    """The training settings of a variant name (see the module's help)."""
    if variant in ("auto", "auto" + LINEAR):  # the search over alpha and lm-scope, with the head its name says
        return {"method": "dhrd", "alpha_search": True, "head": "linear" if variant.endswith(LINEAR) else "mlp"}
    match = re.fullmatch(r"(pooled|dhrd)(?:-a([0-9.]+))?(-reasoning)?(-example)?(-linear)?", variant)
    if not match or (match.group(1) == "pooled" and any(match.groups()[1:4])):
        raise Refused(
            f"unknown variant {variant!r}: pooled[-linear], auto[-linear], or "
            "dhrd[-a<alpha>][-reasoning][-example][-linear]"
        )
    # the head comparison (issue 28), named in every variant: the default became linear on this study's evidence
    head = {"head": "linear" if match.group(5) else "mlp"}
    if match.group(1) == "pooled":
        return {"method": "pooled", **head}
    settings = {"method": "dhrd", "alpha": float(match.group(2) or 1.0), **head}
    if match.group(3):
        settings["lm_scope"] = "reasoning"
    if match.group(4):
        settings["lm_normalization"] = "example"
    return settings


class Study:
    """Where the rows come from and how a finished run is scored."""

    task = "custom"
    input_format = "native"
    examples: list
    label_names: tuple

    def settings(self) -> dict:
        raise NotImplementedError

    def scored_probs(self, run: Path) -> np.ndarray:
        raise NotImplementedError

    def scored_split(self) -> str:
        raise NotImplementedError


class OwnData(Study):
    """An own-data config (train and validation files), scored on the test file beside the training file."""

    def __init__(self, config: Path):
        from dhrd.training.training_args import DHRDTrainingArguments

        self.config = dict(yaml.safe_load(config.read_text()))
        spec = DHRDTrainingArguments(**self.config, output_dir="unused").data_spec()
        spec.validate()
        self.label_names = spec.label_names()
        self.path = Path(self.config.get("test_file") or Path(self.config["train_file"]).with_name(TEST_FILE))
        self.examples = load_file_examples(self.path, spec.columns, self.label_names)

    def settings(self) -> dict:
        # the study scores the test file itself (score_cell), once per cell: training need not score it too
        return {k: v for k, v in self.config.items() if k != "test_file"}

    def scored_split(self) -> str:
        return f"test ({self.path.name}, {len(self.examples)} rows)"

    def scored_probs(self, run: Path) -> np.ndarray:
        from dhrd.inference.engines import load_inference_model
        from dhrd.inference.evaluation import predict_proba

        model, tokenizer = load_inference_model(run / "model")
        return predict_proba(model, tokenizer, [e.text for e in self.examples], names=[e.id for e in self.examples])


class SuperGLUE(Study):
    """A SuperGLUE task, scored on its validation split (test labels are hidden): the last epoch is kept."""

    def __init__(self, task: str, input_format: str):
        self.task, self.input_format = task, input_format
        self.examples = load_task_split(task, "validation", input_format)
        from dhrd.data.tasks import TASKS

        self.label_names = TASKS[task].label_names(input_format)

    def settings(self) -> dict:
        # RTE's long passages: the settings of the earlier RTE studies (results/reproduce-dhrd-vs-pooled-rte-cpu)
        return {"task": self.task, "input_format": self.input_format, "max_length": 768, "truncation": "left"}

    def scored_split(self) -> str:
        return f"validation ({len(self.examples)} rows)"

    def scored_probs(self, run: Path) -> np.ndarray:
        saved = json.loads((run / "validation-predictions.json").read_text())
        by_id = dict(zip(saved["ids"], saved["probs"]))
        return np.array([by_id[e.id] for e in self.examples])


def training_arguments(
    study: Study,
    cell: Cell,
    runs: Path,
    eval_cap: int | None,
    grad_norms: bool,
    backbone: str | None = None,
    searches: Path | None = None,
):
    from dhrd.training.training_args import DHRDTrainingArguments

    own = isinstance(study, OwnData)
    settings = {**study.settings(), **variant_settings(cell.variant)}
    if backbone:  # else the study's config's, else dhrd's default
        settings.update(backbone=backbone, gguf_file=None)
    return DHRDTrainingArguments(
        **settings,
        output_dir=str(runs / cell.name),
        max_train_examples=cell.size,
        subset_seed=1,  # every seed and variant of a budget trains on the same rows: paired comparisons
        max_eval_examples=eval_cap if own else None,
        num_train_epochs=cell.epochs,
        learning_rate=cell.learning_rate,
        seed=cell.seed,
        best_epoch=own and cell.epochs > 1,  # chosen on validation only where validation is not the scored split
        save_steps=50,  # a cell may span sessions
        save_total_limit=1,
        log_grad_norms=grad_norms,
        # an auto cell's search (9 trials: longer than a session) keeps its ended trials beside the tables, committed as
        # they land: a new checkout, with no runs/, runs only the trials that had not ended
        alpha_search_storage=str(search_journal(searches, cell)) if searches and settings.get("alpha_search") else None,
    )


def searches_path(out: Path) -> Path:
    """Where a study's auto cells keep their searches: ``<out>.searches/<cell>.log``, optuna journals."""
    return out.with_name(out.name + ".searches")


def search_journal(searches: Path, cell: Cell) -> Path:
    return searches / f"{cell.name}.log"


def score_cell(study: Study, run: Path) -> dict:
    """The run's probabilities on the scored split, written atomically (the cell's end mark)."""
    target = run / "scored.json"
    if not target.is_file():
        probs = study.scored_probs(run)
        # since the cell started (``main`` resets it): the cell's own, not the queue's; and a resumed cell's
        # training counts its earlier processes' peak (kept in its checkpoints, reported in metrics.json)
        training = json.loads((run / "metrics.json").read_text()).get("memory") or {}
        peaks = [p for p in (peak_rss_gb(), training.get("peak_rss")) if p is not None]
        peak = max(peaks) if peaks else None
        data = {
            "ids": [e.id for e in study.examples],
            "probs": np.round(np.asarray(probs, dtype=np.float64), 6).tolist(),
            "peak_rss_gb": None if peak is None else round(peak, 2),
            "peak_rss_scope": "cell",  # earlier cells kept the study process's peak so far: an upper bound
        }
        write_json_atomic(target, data)
    return json.loads(target.read_text())


def kept_cell(cell: Cell, runs: Path) -> dict | None:
    """What the tables need of a finished run: its scored probabilities and costs (None: not finished)."""
    run = runs / cell.name
    target = run / "scored.json"
    if not target.is_file():
        return None
    saved = json.loads(target.read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    search = metrics.get("alpha_search")
    seconds = metrics.get("optimizer_seconds_per_epoch", 0) * cell.epochs or metrics.get("train_seconds")
    if metrics.get("resumed_from") and metrics.get("train_seconds_before_resume") is None:
        # resumed from a checkpoint that kept no clock (written before it): only the last process was timed, so
        # the run's time is unknown, not that process's (which would read as a faster run)
        seconds = None
    scope = saved.get("peak_rss_scope", "process")
    if (
        scope == "cell"
        and metrics.get("resumed_from")
        and (metrics.get("memory") or {}).get("peak_rss_before_resume") is None
    ):
        scope = LAST_PROCESS  # nor its peak: the processes before the resume are not in it, a lower bound
    return {
        "ids": saved["ids"],
        "probs": saved["probs"],
        "train_seconds": None if seconds is None else (search["search_seconds"] if search else 0) + seconds,
        "peak_rss_gb": saved.get("peak_rss_gb"),
        "peak_rss_scope": scope,
        "chosen": search["chosen"] if search else None,
    }


def cell_result(study: Study, cell: Cell, kept: dict) -> dict:
    by_id = dict(zip(kept["ids"], kept["probs"]))
    probs = np.array([by_id[e.id] for e in study.examples])
    stats = example_statistics(study.task, study.examples, probs, study.input_format)
    score = float(resampled_scores(study.task, stats, np.arange(len(stats["correct"]))[None, :])[0])
    return {
        "cell": cell,
        "stats": stats,
        "score": round(score, 2),
        "train_seconds": kept["train_seconds"],
        "peak_rss_gb": kept["peak_rss_gb"],
        "peak_rss_scope": kept.get("peak_rss_scope", "process"),
        "predicted_classes": len(set(probs.argmax(-1).tolist())),
        "chosen": kept["chosen"],
    }


def cells_path(out: Path) -> Path:
    return out.with_name(out.name + ".cells.json")


def load_kept(out: Path) -> dict[str, dict]:
    """The finished cells kept beside the tables, by cell name."""
    path = cells_path(out)
    return json.loads(path.read_text()) if path.is_file() else {}


def pair_with_pooled_of(others: list[Path], study: Study, backbone: str, kept: dict[str, dict]) -> None:
    """Add to ``kept`` the pooled cells (either head) of other studies of the same scored rows and student that it
    lacks: an auto study that trains only auto pairs with the fixed-settings study's pooled cells, from their kept
    cells, so the pairing outlives the runs folder the two once shared (a new checkout has none)."""
    rows = sorted(e.id for e in study.examples)
    for other in others:
        summary_path = other.with_suffix(".json")
        if not summary_path.is_file():
            raise Refused(f"--pair-with {other}: no study there ({summary_path} is missing)")
        theirs = json.loads(summary_path.read_text()).get("backbone") or DEFAULT_STUDENT
        if theirs != backbone:
            raise Refused(f"--pair-with {other}: its student is {theirs}, this study's {backbone}")
        for name, cell in load_kept(other).items():
            parsed = parse_cell(name)
            if parsed is None or parsed.variant not in ("pooled", "pooled" + LINEAR) or name in kept:
                continue
            if sorted(cell["ids"]) != rows:
                raise Refused(f"--pair-with {other}: its cell {name} scored other rows than this study's")
            kept[name] = cell


def tables_without_cells(out: Path) -> bool:
    """Tables written before their cells were kept beside them (a rerun would replace them). A study whose first
    run kept none yet has an empty cells file: it is not one (its second start resumed nothing otherwise)."""
    return out.with_suffix(".json").is_file() and not cells_path(out).is_file()


def ours(cell: Cell, named: list[Cell]) -> bool:
    """Whether a finished cell of a shared runs folder belongs to the study that names ``named``: one of them, or a
    pooled cell (either head) of their budgets and seeds, which its variants pair with. Two queues share a runs
    folder (the fixed settings and auto of one task), and each table is what its own command measured."""
    # by name: a cell read back from its folder's name has the budget that name rounds to
    if cell.name in {c.name for c in named}:
        return True
    pooled = cell.variant in ("pooled", "pooled" + LINEAR)
    return pooled and (cell.budget, cell.seed) in {(c.budget, c.seed) for c in named}


def keep_finished(runs: Path, out: Path, kept: dict[str, dict], named: list[Cell]) -> None:
    """Read the study's finished cells under ``runs`` into ``kept`` (see ``ours``), and write them all beside the
    tables. A run still there is read again (what its cell records follows the study's reading of a run: a time
    found unknown after it was first kept); cells kept before stay: tables that several commands wrote to keep
    every one's rows, and cells whose runs are gone."""
    for path in sorted(runs.glob("*/scored.json")) if runs.is_dir() else []:
        cell = parse_cell(path.parent.name)
        if cell is not None and ours(cell, named) and (found := kept_cell(cell, runs)):
            kept[cell.name] = found
    write_json_atomic(cells_path(out), kept)


def table_cells(named: list[Cell], kept: dict[str, dict]) -> list[Cell]:
    """The tables' cells: those the command names and every kept one, by budget, then seed whatever order the command
    gave the seeds in (a queue working from the far end: ``--seeds 3,2,1``), variants in the command's order."""
    known = {c.name: c for c in named} | {n: c for n in kept if (c := parse_cell(n))}
    return sorted(known.values(), key=lambda c: (c.size or 10**9, c.epochs, c.learning_rate, c.seed))


def summarise(study: Study, cells: list[Cell], kept: dict[str, dict]) -> dict:
    floor = floors(study.examples, study.input_format, len(study.label_names))[study.task]
    results = {c: cell_result(study, c, kept[c.name]) for c in cells if c.name in kept}
    rows = []
    for budget in dict.fromkeys(c.budget for c in cells):
        here = [c for c in cells if c.budget == budget]
        for variant in dict.fromkeys(c.variant for c in here):
            done = [results[c] for c in here if c.variant == variant and c in results]
            scores = [r["score"] for r in done]
            row = {
                "budget": budget,
                "size": here[0].size,
                "epochs": here[0].epochs,
                "learning_rate": here[0].learning_rate,
                "variant": variant,
                "seeds": [r["cell"].seed for r in done],
                "scores": scores,
                "mean": round(float(np.mean(scores)), 2) if scores else None,
                "learnt": bool(scores) and bool(float(np.mean(scores)) >= floor["score"] + MARGIN),
                "train_seconds": [r["train_seconds"] for r in done],
                "peak_rss_gb": [r["peak_rss_gb"] for r in done],
                "peak_rss_scope": [r["peak_rss_scope"] for r in done],
                "predicted_classes": [r["predicted_classes"] for r in done],
                "chosen": [r["chosen"] for r in done if r["chosen"]],
            }
            # against pooled with the same head (what `--method pooled` gives beside `--method dhrd`), else the other
            own, other = ("pooled" + LINEAR, "pooled") if variant.endswith(LINEAR) else ("pooled", "pooled" + LINEAR)
            base = own if any(c.variant == own for c in here) else other
            paired = paired_with(base, here, done, results)
            if not variant.startswith("pooled") and paired:
                row["baseline"] = base
                row["paired"] = difference(study, paired)
                row.update(
                    time_vs_pooled([(r["cell"].seed, p["train_seconds"], r["train_seconds"]) for p, r in paired])
                )
            if variant.endswith(LINEAR):  # the head comparison: against the same variant with the MLP head
                if pairs := paired_with(variant[: -len(LINEAR)], here, done, results):
                    row["vs_mlp"] = difference(study, pairs)
                pairs = paired_with("pooled" + LINEAR, here, done, results)
                if pairs and variant != "pooled" + LINEAR:  # DHRD against pooled with the same (linear) head
                    row["vs_pooled_linear"] = difference(study, pairs)
            rows.append(row)
    return {
        "task": study.task,
        "scored_split": study.scored_split(),
        "floor": round(floor["score"], 2),
        "chance": floor["chance"],
        "rows": rows,
    }


def time_vs_pooled(seconds: list[tuple[int, float | None, float | None]]) -> dict:
    """The variant's training time over its pooled's from (seed, pooled's seconds, the variant's) of each paired
    seed, summed over the seeds where both times are known; which seeds, and which not, where a time is unknown (a
    run resumed from a checkpoint that kept no clock)."""
    timed = [(seed, base, own) for seed, base, own in seconds if base and own]
    base = sum(b for _, b, _ in timed)
    ratio = round(sum(own for _, _, own in timed) / base, 2) if base else None
    if len(timed) == len(seconds):
        return {"time_vs_pooled": ratio}
    untimed = [seed for seed, b, o in seconds if not (b and o)]  # the seeds left out of timed
    return {"time_vs_pooled": ratio, "time_seeds": [s for s, _, _ in timed], "untimed_seeds": untimed}


def time_text(row: dict, unit: str = "") -> str:
    """``1.96x``, and the seeds it is over where it is not over every paired one."""
    if not row.get("time_vs_pooled"):
        return ""
    seeds = row.get("time_seeds")
    if seeds is None:
        return f"{row['time_vs_pooled']:.2f}x{unit}"
    unknown = row.get("untimed_seeds")
    missing = "the other seeds' times are unknown"  # a row kept before rows named them
    if unknown:
        missing = (
            f"{_seeds_text(unknown)}'s time is unknown"
            if len(unknown) == 1
            else f"{_seeds_text(unknown)}' times are unknown"
        )
    return f"{row['time_vs_pooled']:.2f}x{unit} ({_seeds_text(seeds)} only: {missing})"


def _seeds_text(seeds: list[int]) -> str:
    """``seed 2``, ``seeds 1,3``."""
    return f"seed{'s' if len(seeds) != 1 else ''} {','.join(map(str, seeds))}"


def paired_with(other: str, here: list, done: list[dict], results: dict) -> list[tuple[dict, dict]]:
    """(the ``other`` variant's result, a finished one's) for each seed of ``done`` that ``other`` finished too."""
    by_seed = {c.seed: results[c] for c in here if c.variant == other and c in results}
    return [(by_seed[r["cell"].seed], r) for r in done if r["cell"].seed in by_seed]


def difference(study: Study, pairs: list[tuple[dict, dict]]) -> dict:
    """The second of each pair minus the first, with its confidence interval (``paired_difference``) and the seeds
    it pairs (fewer than the row's where the other variant has fewer cells so far)."""
    found = paired_difference(study.task, [p["stats"] for p, _ in pairs], [r["stats"] for _, r in pairs])
    return {**found, "paired_seeds": [r["cell"].seed for _, r in pairs]}


def difference_text(paired: dict | None, row_seeds: list[int]) -> str:
    """``+1.2 [-0.3, +2.7] (verdict)``, and which seeds it pairs where they are not all of the row's."""
    if not paired:
        return ""
    text = f"{paired['difference']:+.1f} [{paired['ci'][0]:+.1f}, {paired['ci'][1]:+.1f}] ({paired['verdict']})"
    seeds = paired.get("paired_seeds", row_seeds)  # a study kept before differences named their seeds: all
    if seeds == row_seeds:
        return text
    return text + f", seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))} only"


def peak_memory(row: dict) -> str:
    """The row's largest cell peak in GB: marked ≤ where the largest is a process's peak rather than its cell's (an
    upper bound), ≥ where a cell's peak is its last process's only (a lower bound: the row's could be higher)."""
    recorded = row.get("peak_rss_gb") or []
    scopes = row.get("peak_rss_scope") or ["process"] * len(recorded)  # a study kept before scopes were
    peaks = [(gb, scope) for gb, scope in zip(recorded, scopes) if gb is not None]
    if not peaks:
        return ""
    most = max(gb for gb, _ in peaks)
    measured = [gb for gb, scope in peaks if scope != "process"]  # each cell's own peak (or its last process's)
    if not measured or max(measured) < most:
        return f"≤{most:.1f}"  # the largest is a study process's peak: an upper bound
    return f"≥{most:.1f}" if any(scope == LAST_PROCESS for _, scope in peaks) else f"{most:.1f}"


def markdown(summary: dict, title: str, commands: list[str]) -> str:
    lines = [
        f"# {title}",
        "",
        f"{summary.get('backbone') or DEFAULT_STUDENT}, LoRA, 2 CPU cores. Scored on {summary['scored_split']};",
        "seeds paired on the same",
        f"training rows. Majority floor **{summary['floor']:.1f}**, chance {summary['chance']:.1f}; a budget is",
        f"learnt when its mean is at least floor + {MARGIN:g}. Differences are the variant minus pooled in points of",
        "the task score, with a 95% bootstrap interval over scored examples and seeds. Time: training (and for",
        "auto, the search) relative to the paired pooled runs. Peak: the most resident memory of any of the",
        "variant's cells, training and scoring (≤: a cell that kept its study process's peak so far, an upper bound;",
        "≥: a cell resumed from a checkpoint that kept no peak, its last process's only, a lower bound).",
        "",
        "| budget | variant | seeds | score per seed | mean | learnt | minus pooled [95% CI] | time vs pooled"
        " | peak GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        p = r.get("paired")
        diff = difference_text(p, r["seeds"])
        if p and r.get("baseline", "pooled") != "pooled":
            diff += f" vs {r['baseline']}"
        scores = ", ".join(f"{s:.1f}" for s in r["scores"])
        mean = "" if r["mean"] is None else f"{r['mean']:.1f}"
        ratio = time_text(r)
        chosen = f" (chose: {'; '.join(r['chosen'])})" if r["chosen"] else ""
        lines.append(
            f"| {r['budget']} | {r['variant']}{chosen} | {','.join(map(str, r['seeds']))} | {scores} | {mean} | "
            f"{'yes' if r['learnt'] else 'no'} | {diff} | {ratio} | {peak_memory(r)} |"
        )
    heads = [r for r in summary["rows"] if r.get("vs_mlp")]
    if heads:
        lines += [
            "",
            "## The linear head (the default since this comparison) against the paper's MLP head, paired by seed",
            "",
            "| budget | variant | seeds | linear minus MLP [95% CI] | minus pooled-linear [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for r in heads:
            against = (difference_text(r.get(key), r["seeds"]) for key in ("vs_mlp", "vs_pooled_linear"))
            seeds = ",".join(map(str, r["seeds"]))
            lines.append(f"| {r['budget']} | {r['variant']} | {seeds} | {' | '.join(against)} |")
    if len(commands) == 1:
        lines += ["", f"Command: `{commands[0]}`", ""]
    else:  # each trains and scores the cells it names and leaves the kept ones: together they rebuild the tables
        lines += [
            "",
            "Commands, oldest first, each the last to name some of these cells (cells none of them names are another "
            "study's: `--pair-with`, or one sharing `--runs`):",
            "",
            *(f"- `{c}`" for c in commands),
            "",
        ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="an own-data config (YAML of dhrd train settings), scored on its test file")
    source.add_argument("--task", help="a SuperGLUE task, scored on its validation split")
    parser.add_argument("--input-format", default="native", help="a SuperGLUE task's input format")
    parser.add_argument("--sizes", default="all", help="training rows per budget, comma-separated (all: the split)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--variants", default="pooled,dhrd")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-cap", type=int, default=300, help="own data: validation rows of a per-epoch pass")
    parser.add_argument("--grad-norms", action="store_true", help="log each loss term's gradient norm")
    parser.add_argument(
        "--backbone",
        help=f"the student (hub name, directory or .gguf; default: {DEFAULT_STUDENT}); give each its own --runs/--out",
    )
    parser.add_argument("--runs", required=True, help="the cells' run directories")
    parser.add_argument("--out", required=True, help="results path without suffix (.md and .json are written)")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--pair-with",
        action="append",
        default=[],
        metavar="RESULTS",
        help="another study's results path (its --out) whose pooled cells this one pairs with (repeatable)",
    )
    parser.add_argument("--render", action="store_true", help="only rewrite the tables from finished cells")
    parser.add_argument(
        "--restart-tables", action="store_true", help="replace tables written before cells were kept beside them"
    )
    return parser


def named_cells(options: argparse.Namespace) -> list[Cell]:
    """The cells a command names, seed-major: every seed's variants land before the next seed starts."""
    variants = [v.strip() for v in options.variants.split(",") if v.strip()]
    for variant in variants:
        variant_settings(variant)  # before any data loads
    sizes = [None if s == "all" else int(s) for s in options.sizes.split(",")]
    seeds = [int(s) for s in options.seeds.split(",")]
    return [Cell(n, v, s, options.epochs, options.lr) for n in sizes for s in seeds for v in variants]


def commands_path(out: Path) -> Path:
    return out.with_name(out.name + ".commands.json")


def load_commands(out: Path) -> list[dict]:
    """The commands kept beside the tables, oldest first: each with the names of the cells it names."""
    path = commands_path(out)
    return json.loads(path.read_text()) if path.is_file() else []


def record_command(out: Path, command: str, cells: list[Cell]) -> None:
    """Add ``command`` and the cells it names to the study's commands (``<out>.commands.json``, committed with the
    tables), last: a study's tables gather cells from several commands (a task's MLP pair, then its linear pair), and
    the one command the tables used to show reproduced only the last one's rows. A command run again moves last."""
    entries = [e for e in load_commands(out) if e["command"] != command]
    write_json_atomic(commands_path(out), [*entries, {"command": command, "cells": [c.name for c in cells]}])


def table_commands(out: Path, cells: list[Cell]) -> list[str]:
    """The recorded commands, oldest first, that are the last to name one of the tables' ``cells`` (a later command
    naming every cell an earlier one named replaces it)."""
    entries = load_commands(out)
    last = {name: i for i, e in enumerate(entries) for name in e["cells"]}
    used = {last[c.name] for c in cells if c.name in last}
    return [e["command"] for i, e in enumerate(entries) if i in used]


def main() -> None:
    options = build_parser().parse_args()
    cells = named_cells(options)
    study = OwnData(Path(options.config)) if options.config else SuperGLUE(options.task, options.input_format)
    runs, out = Path(options.runs), Path(options.out)
    command = command_line(drop=("--render",), program=("python", "scripts/variants_study.py"))
    title = options.title or f"DHRD variants against pooled: {options.task or Path(options.config).stem}"

    backbone_name = Path(options.backbone).name if options.backbone else DEFAULT_STUDENT
    kept = load_kept(out)
    if tables_without_cells(out) and not options.restart_tables:
        raise Refused(
            f"{out.with_suffix('.json')} holds tables whose cells are not kept in {cells_path(out)} (written before"
            " cells were kept): rerunning would replace them. Write to another --out, or pass --restart-tables."
        )

    def save() -> None:
        # every finished cell of this study, under runs/ or kept from an earlier checkout, stays in the tables
        pair_with_pooled_of([Path(p) for p in options.pair_with], study, backbone_name, kept)
        keep_finished(runs, out, kept, cells)
        shown = table_cells(cells, kept)
        summary = {**summarise(study, shown, kept), "backbone": backbone_name}
        commands = table_commands(out, shown) or [command]
        write_json_atomic(out.with_suffix(".json"), {**summary, "command": command, "commands": commands})
        write_text_atomic(out.with_suffix(".md"), markdown(summary, title, commands))

    if not options.render:  # a rendering trains nothing: it is not one of the commands that wrote the cells
        record_command(out, command, cells)
    save()
    if options.render:
        return
    from dhrd.training.run import train

    for cell in cells:
        if cell.name in kept:
            continue
        print(f"== {cell.name}", flush=True)
        reset_peak()  # this cell's peak memory, training and scoring, not the earlier cells' of this process
        arguments = training_arguments(
            study, cell, runs, options.eval_cap, options.grad_norms, options.backbone, searches_path(out)
        )
        if not finish_cell(study, runs / cell.name, partial(train, arguments)):
            print(f"== {cell.name}: another process is training it; left to that one", flush=True)
            continue
        save()


def finish_cell(study: Study, run: Path, train_run) -> bool:
    """Train the cell's run (``train_run``) unless it has finished training, and score it, holding the run
    directory's lock throughout; False, having done nothing, when another process holds it: two queues whose commands
    name the same cells share them out, and the other keeps the cell when it lands."""
    from dhrd.training.run_lock import RunInUse, run_lock

    try:
        with run_lock(run):
            if not (run / "metrics.json").is_file():
                train_run()
            score_cell(study, run)
    except RunInUse:
        return False
    return True


if __name__ == "__main__":
    exit_on_input_error(main, "variants_study")
