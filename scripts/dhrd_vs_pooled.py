"""Issue 5's experiment: pooled vs DHRD over seeds, an alpha sweep and one Table-2 ablation.

Every run is an ordinary ``dhrd.train`` run in ``<runs>/<name>``; a finished one (its metrics.json exists)
is skipped and a killed one resumes from its last checkpoint, so the script can be stopped and restarted
at any moment. Runs go in priority order (the paired pooled/DHRD grid first, seed by seed), and the
summary is rewritten after every run from whatever has finished.

    python scripts/dhrd_vs_pooled.py --runs runs/issue5 --out results/dhrd-vs-pooled-smollm2-cpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dhrd.reproduction import score_stats as _stats
from dhrd.runtime import write_json_atomic, write_text_atomic
from dhrd.training.run import train
from dhrd.training.training_args import DHRDTrainingArguments

# Caps keep one pooled + one DHRD run per task and seed to a few CPU minutes here (see the report).
TASKS: dict[str, int | None] = {}  # task -> max training examples (None: the full split), from --tasks


def plan(seeds: list[int], sweep_task: str, sweep_alphas: list[float], ablation: str) -> list[dict]:
    runs = []
    for seed in seeds:
        for task in TASKS:
            runs.append({"task": task, "method": "pooled", "alpha": 0.0, "mode": "consistent", "seed": seed})
            runs.append({"task": task, "method": "dhrd", "alpha": 1.0, "mode": "consistent", "seed": seed})
    # the ablation and the sweep pair with the first seed's pooled and DHRD runs (CPU time allows no more)
    if ablation:
        runs.append({"task": sweep_task, "method": "dhrd", "alpha": 1.0, "mode": ablation, "seed": seeds[0]})
    for alpha in sweep_alphas:
        runs.append({"task": sweep_task, "method": "dhrd", "alpha": alpha, "mode": "consistent", "seed": seeds[0]})
    return runs


def run_name(run: dict) -> str:
    if run["method"] == "pooled":
        return f"{run['task']}-pooled-s{run['seed']}"
    return f"{run['task']}-dhrd-a{run['alpha']:g}-{run['mode']}-s{run['seed']}"


def train_one(run: dict, root: Path, epochs: float, train_missing: bool = True) -> dict | None:
    output = root / run_name(run)
    if not (output / "metrics.json").exists():
        if not train_missing:
            return None
        train(
            DHRDTrainingArguments(
                output_dir=str(output),
                task=run["task"],
                method=run["method"],
                alpha=run["alpha"] if run["method"] == "dhrd" else None,
                rationale_mode=run["mode"],
                seed=run["seed"],
                num_train_epochs=epochs,
                max_train_examples=TASKS[run["task"]],
                save_steps=20,  # the script may be stopped and restarted at any time
            )
        )
    metrics = json.loads((output / "metrics.json").read_text())
    # A run that shared the CPU with other work (marked by hand with this file) has a wall-clock time that
    # says nothing about the method: it is left out of the time ratio, but its score counts.
    metrics["timing_contaminated"] = (output / "TIMING_CONTAMINATED").exists()
    return metrics


def summarise(done: list[tuple[dict, dict]]) -> dict:
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    for run, metrics in done:
        groups.setdefault((run["task"], run["method"], run["alpha"], run["mode"]), []).append((run, metrics))
    rows = []
    for (task, method, alpha, mode), items in groups.items():
        clean = [m for _, m in items if not m.get("resumed_from") and not m.get("timing_contaminated")]
        rows.append(
            {
                "task": task,
                "method": method,
                "alpha": alpha,
                "mode": mode,
                "train_rows": items[0][1]["train_rows"],
                "rows_without_rationale": items[0][1].get("rows_without_rationale"),
                "score": _stats([m["score"] for _, m in items]),
                "metrics": {k: _stats([m["tasks"][task][k] for _, m in items]) for k in _metric_names(items)},
                "seeds": [r["seed"] for r, _ in items],
                "optimizer_seconds_per_epoch": _stats([m["optimizer_seconds_per_epoch"] for m in clean])
                if clean and "optimizer_seconds_per_epoch" in clean[0]
                else None,
            }
        )
    gains = {}
    for task in TASKS:
        pooled = _find(rows, task, "pooled", 0.0, "consistent")
        dhrd = _find(rows, task, "dhrd", 1.0, "consistent")
        if pooled and dhrd:
            # paired by seed: the same training subset and initialisation for both methods
            paired = [
                (p, d)
                for s, p in zip(pooled["seeds"], pooled["score"]["values"])
                for s2, d in zip(dhrd["seeds"], dhrd["score"]["values"])
                if s == s2
            ]
            time_ratio = None
            if pooled["optimizer_seconds_per_epoch"] and dhrd["optimizer_seconds_per_epoch"]:
                time_ratio = round(
                    dhrd["optimizer_seconds_per_epoch"]["mean"] / pooled["optimizer_seconds_per_epoch"]["mean"], 3
                )
            gains[task] = {
                "pooled": pooled["score"]["mean"],
                "dhrd": dhrd["score"]["mean"],
                "absolute_gain": round(dhrd["score"]["mean"] - pooled["score"]["mean"], 2),
                "relative_gain_percent": round(100 * (dhrd["score"]["mean"] / pooled["score"]["mean"] - 1), 2),
                "paired_differences": [round(d - p, 2) for p, d in paired],
                "dhrd_wins": sum(d > p for p, d in paired),
                "pairs": len(paired),
                "time_ratio_dhrd_over_pooled": time_ratio,
            }
    return {"rows": rows, "gains": gains}


def _metric_names(items) -> list[str]:
    task_metrics = items[0][1]["tasks"][items[0][0]["task"]]
    return [k for k in task_metrics if k not in ("examples", "rows")]


def _find(rows, task, method, alpha, mode):
    return next(
        (r for r in rows if (r["task"], r["method"], r["alpha"], r["mode"]) == (task, method, alpha, mode)), None
    )


def _pm(stat: dict | None) -> str:
    if not stat:
        return "–"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}" if stat["std"] is not None else f"{stat['mean']:.2f}"


def markdown(summary: dict, epochs: float) -> str:
    lines = [
        f"SmolLM2-135M-Instruct, reference rationales, {epochs:g} epoch(s), training caps {TASKS} "
        "(None = full split), full validation split, seeds as listed; every other setting is the default.",
        "",
        "| task | method | alpha | rationales | train rows | validation score | per-metric | seeds |"
        " optimiser s/epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        per_metric = ", ".join(f"{k} {_pm(v)}" for k, v in r["metrics"].items() if k != "score")
        lines.append(
            f"| {r['task']} | {r['method']} | {r['alpha']:g} | {r['mode'] if r['method'] == 'dhrd' else '–'} "
            f"| {r['train_rows']} | {_pm(r['score'])} | {per_metric} | {r['seeds']} "
            f"| {_pm(r['optimizer_seconds_per_epoch'])} |"
        )
    lines += [
        "",
        "| task | pooled | DHRD | gain (points) | relative gain | DHRD − pooled per seed | DHRD wins |"
        " DHRD/pooled time per epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, g in summary["gains"].items():
        lines.append(
            f"| {task} | {g['pooled']:.2f} | {g['dhrd']:.2f} | {g['absolute_gain']:+.2f} "
            f"| {g['relative_gain_percent']:+.2f}% | {g['paired_differences']} | {g['dhrd_wins']}/{g['pairs']} "
            f"| {g['time_ratio_dhrd_over_pooled']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs/issue5")
    parser.add_argument("--out", default="results/dhrd-vs-pooled-smollm2-cpu")
    parser.add_argument("--tasks", default="copa,cb:64,rte:200", help="task[:max training examples], comma-separated")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--sweep-task", default="copa")
    parser.add_argument("--sweep-alphas", default="0.25,0.5")
    parser.add_argument("--ablation", default="shuffle_reasoning", help="'' for none")
    parser.add_argument("--summary-only", action="store_true", help="summarise the finished runs, train none")
    options = parser.parse_args()
    TASKS.clear()
    for item in options.tasks.split(","):
        task, _, cap = item.partition(":")
        TASKS[task] = int(cap) if cap else None
    seeds = [int(s) for s in options.seeds.split(",")]
    alphas = [float(a) for a in options.sweep_alphas.split(",") if a]
    root, out = Path(options.runs), Path(options.out)
    done = []
    for run in plan(seeds, options.sweep_task, alphas, options.ablation):
        metrics = train_one(run, root, options.epochs, train_missing=not options.summary_only)
        if metrics is None:
            continue
        done.append((run, metrics))
        summary = summarise(done)
        write_json_atomic(out.with_suffix(".json"), {"epochs": options.epochs, "caps": TASKS, **summary})
        write_text_atomic(out.with_suffix(".md"), markdown(summary, options.epochs))
        print(markdown(summary, options.epochs), flush=True)


if __name__ == "__main__":
    main()
