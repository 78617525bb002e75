"""DHRD with human explanations: pooled vs DHRD on ComVE (SemEval-2020 Task 4 subtask A, which of two statements
is against common sense), the first annotator's explanation as the rationale, paired by seed on the same training
rows, scored on the official **test** split (the validation split only picks the epoch where there are several).

The data comes in as your own files, through the own-data config `examples/own-data/comve.yaml` (no ComVE code in
the library). Every cell is one `dhrd.train` run in `<runs>/<cell>`; a finished cell (its `test-predictions.json`
exists) is read back, a killed one resumes from its checkpoint, and the tables are rewritten after every cell:

    python scripts/comve_study.py --sizes 1000 --variants pooled,dhrd          # resumable; hours on 2 cores
    python scripts/comve_study.py --variants pooled --lr 2e-4                   # pooled only: does it learn?
    python scripts/comve_study.py --render                                      # rewrite the tables only

A variant is `pooled`, or `dhrd` with optional `-a<alpha>` and `-reasoning` (`--lm-scope reasoning`), for
example `dhrd-a0.25-reasoning`.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from dhrd.data import load_file_examples
from dhrd.runtime import write_json_atomic, write_text_atomic
from dhrd.stats import example_statistics, paired_difference

CONFIG = Path("examples/own-data/comve.yaml")
TEST_FILE = "test.jsonl"  # beside the config's training file
MARGIN = 5.0  # points above the majority floor that count as learning (as in the learning-budget study)


@dataclass(frozen=True)
class Cell:
    size: int
    variant: str
    seed: int
    epochs: float
    learning_rate: float

    @property
    def budget(self) -> str:
        return f"n{self.size}-e{self.epochs:g}-lr{self.learning_rate:g}"

    @property
    def name(self) -> str:
        return f"{self.budget}-{self.variant}-s{self.seed}"


def variant_settings(variant: str) -> dict:
    """``pooled``, ``dhrd``, ``dhrd-a0.25``, ``dhrd-reasoning``, ``dhrd-a0.5-reasoning``: the training settings."""
    match = re.fullmatch(r"(pooled|dhrd)(?:-a([0-9.]+))?(-reasoning)?", variant)
    if not match or (match.group(1) == "pooled" and (match.group(2) or match.group(3))):
        raise SystemExit(f"unknown variant {variant!r}: pooled, or dhrd[-a<alpha>][-reasoning]")
    if match.group(1) == "pooled":
        return {"method": "pooled"}
    settings = {"method": "dhrd", "alpha": float(match.group(2) or 1.0)}
    if match.group(3):
        settings["lm_scope"] = "reasoning"
    return settings


def read_config(path: Path) -> dict:
    """The own-data config's settings (its file paths are relative to the repository root, where it runs)."""
    return dict(yaml.safe_load(path.read_text()))


def training_arguments(cell: Cell, config: dict, runs: Path, eval_cap: int | None):
    from dhrd.training import DHRDTrainingArguments

    return DHRDTrainingArguments(
        **config,
        **variant_settings(cell.variant),
        output_dir=str(runs / cell.name),
        max_train_examples=cell.size,
        subset_seed=1,  # every seed and variant of a size trains on the same rows: paired comparisons
        max_eval_examples=eval_cap,
        num_train_epochs=cell.epochs,
        learning_rate=cell.learning_rate,
        seed=cell.seed,
        best_epoch=cell.epochs > 1,  # chosen on validation; the scored split is test
        save_steps=50,  # a cell may span sessions
        save_total_limit=1,
    )


def test_examples(config: dict):
    """The test rows, read with the columns and label names training derives from the config."""
    from dhrd.training import DHRDTrainingArguments

    spec = DHRDTrainingArguments(**config).data_spec()
    spec.validate()
    names = spec.label_names()
    path = Path(config["train_file"]).with_name(TEST_FILE)
    return load_file_examples(path, spec.columns, names), names


def _labels(examples) -> list:
    return [e.label for e in examples]


def score_on_test(run: Path, examples) -> dict:
    """The run's model on the test rows: per-row probabilities, written atomically (the cell's end mark)."""
    from dhrd.engines import load_inference_model
    from dhrd.evaluation import predict_proba

    target = run / "test-predictions.json"
    if target.is_file():
        return json.loads(target.read_text())
    model, tokenizer = load_inference_model(run / "model")
    probs = predict_proba(model, tokenizer, [e.text for e in examples], names=[e.id for e in examples])
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    data = {"ids": [e.id for e in examples], "labels": labels, "probs": np.round(probs, 6).tolist()}
    write_json_atomic(target, data)
    return data


def cell_result(cell: Cell, runs: Path, examples) -> dict | None:
    run = runs / cell.name
    target = run / "test-predictions.json"
    if not target.is_file():
        return None
    saved = json.loads(target.read_text())
    by_id = dict(zip(saved["ids"], saved["probs"]))
    probs = np.array([by_id[e.id] for e in examples])
    metrics = json.loads((run / "metrics.json").read_text())
    study = run / "study.json"
    stats = example_statistics("custom", examples, probs, "native")
    return {
        "cell": cell,
        "stats": stats,
        "accuracy": round(100 * float(stats["correct"].mean()), 2),
        "validation": metrics.get("tasks", {}).get("custom", {}).get("accuracy"),
        "train_seconds": metrics.get("optimizer_seconds_per_epoch", 0) * cell.epochs or metrics.get("train_seconds"),
        "peak_rss_gb": json.loads(study.read_text()).get("peak_rss_gb") if study.is_file() else None,
        "predicted_classes": int(len(set(probs.argmax(-1).tolist()))),
    }


def summarise(cells: list[Cell], runs: Path, examples, names) -> dict:
    labels = np.array(_labels(examples))
    floor = round(100 * np.bincount(labels).max() / len(labels), 2)
    results = {c: r for c in cells if (r := cell_result(c, runs, examples))}
    rows = []
    budgets = sorted({(c.size, c.epochs, c.learning_rate) for c in cells})
    for size, epochs, lr in budgets:
        here = [c for c in cells if (c.size, c.epochs, c.learning_rate) == (size, epochs, lr)]
        for variant in dict.fromkeys(c.variant for c in here):
            done = [results[c] for c in here if c.variant == variant and c in results]
            scores = [r["accuracy"] for r in done]
            row = {
                "size": size,
                "epochs": epochs,
                "learning_rate": lr,
                "variant": variant,
                "seeds": [r["cell"].seed for r in done],
                "scores": scores,
                "mean": round(float(np.mean(scores)), 2) if scores else None,
                "learnt": bool(scores) and bool(float(np.mean(scores)) >= floor + MARGIN),
                "train_seconds": [r["train_seconds"] for r in done],
                "peak_rss_gb": [r["peak_rss_gb"] for r in done],
            }
            if variant != "pooled":
                paired = [
                    (results[p], r)
                    for r in done
                    if (p := next((c for c in here if c.variant == "pooled" and c.seed == r["cell"].seed), None))
                    in results
                ]
                if paired:
                    row["paired"] = paired_difference(
                        "custom", [p["stats"] for p, _ in paired], [r["stats"] for _, r in paired]
                    )
                    pooled_time = sum(p["train_seconds"] or 0 for p, _ in paired)
                    own_time = sum(r["train_seconds"] or 0 for _, r in paired)
                    row["time_vs_pooled"] = round(own_time / pooled_time, 2) if pooled_time else None
            rows.append(row)
    return {"floor": floor, "chance": round(100 / len(names), 2), "test_rows": len(labels), "rows": rows}


def markdown(summary: dict, command: str) -> str:
    lines = [
        "# ComVE: pooled vs DHRD with human explanations (SmolLM2-135M-Instruct, 2 CPU cores)",
        "",
        "Which of two statements is against common sense (SemEval-2020 Task 4, subtask A). DHRD's rationale is the",
        "first annotator's explanation. Seeds are paired on the same training rows (a seeded sample of the 10,000),",
        f"every model is scored on the official test split ({summary['test_rows']} rows). Majority floor "
        f"**{summary['floor']:.1f}**, chance {summary['chance']:.1f}; a budget is learnt when its mean is at least",
        f"floor + {MARGIN:g}. Differences are DHRD minus pooled in accuracy points, with a 95% bootstrap interval over",
        "test rows and seeds.",
        "",
        "| rows | epochs | lr | variant | seeds | test accuracy | mean | learnt | DHRD - pooled [95% CI] "
        "| time vs pooled |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        p = r.get("paired")
        diff = f"{p['difference']:+.1f} [{p['ci'][0]:+.1f}, {p['ci'][1]:+.1f}] ({p['verdict']})" if p else ""
        scores = ", ".join(f"{s:.1f}" for s in r["scores"])
        mean = "" if r["mean"] is None else f"{r['mean']:.1f}"
        ratio = f"{r['time_vs_pooled']:.2f}x" if r.get("time_vs_pooled") else ""
        lines.append(
            f"| {r['size']} | {r['epochs']:g} | {r['learning_rate']:g} | {r['variant']} | "
            f"{','.join(map(str, r['seeds']))} | {scores} | {mean} | {'yes' if r['learnt'] else 'no'} | {diff} | "
            f"{ratio} |"
        )
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--sizes", default="1000")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--variants", default="pooled,dhrd")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-cap", type=int, default=300, help="validation rows for the per-epoch pass")
    parser.add_argument("--runs", default="runs/comve")
    parser.add_argument("--out", default="results/comve-smollm2-cpu")
    parser.add_argument("--render", action="store_true", help="only rewrite the tables from finished cells")
    options = parser.parse_args()
    config = read_config(Path(options.config))
    runs, out = Path(options.runs), Path(options.out)
    sizes = [int(s) for s in options.sizes.split(",")]
    seeds = [int(s) for s in options.seeds.split(",")]
    variants = [v.strip() for v in options.variants.split(",") if v.strip()]
    for variant in variants:
        variant_settings(variant)
    # seed-major: every seed's pair lands before the next seed starts
    cells = [Cell(n, v, s, options.epochs, options.lr) for n in sizes for s in seeds for v in variants]
    examples, names = test_examples(config)
    command = "python scripts/comve_study.py " + shlex.join(a for a in sys.argv[1:] if a != "--render")

    def save() -> None:
        # earlier budgets' cells stay in the table: every finished run under runs/ is read back
        known = {c.name: c for c in cells}
        for path in sorted(runs.glob("*/test-predictions.json")) if runs.is_dir() else []:
            cell = parse_cell(path.parent.name)
            if cell is not None and cell.name not in known:
                known[cell.name] = cell
        summary = summarise(list(known.values()), runs, examples, names)
        write_json_atomic(out.with_suffix(".json"), {**summary, "command": command})
        write_text_atomic(out.with_suffix(".md"), markdown(summary, command))

    save()
    if options.render:
        return
    from dhrd.training import train

    for cell in cells:
        run = runs / cell.name
        if (run / "test-predictions.json").is_file():
            continue
        print(f"== {cell.name}", flush=True)
        if not (run / "metrics.json").is_file():
            train(training_arguments(cell, config, runs, options.eval_cap))
        score_on_test(run, examples)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # this process's peak so far, GB
        write_json_atomic(run / "study.json", {"peak_rss_gb": round(peak, 2)})
        save()


def parse_cell(name: str) -> Cell | None:
    match = re.fullmatch(r"n(\d+)-e([0-9.]+)-lr([0-9.e-]+)-(.+)-s(\d+)", name)
    if not match:
        return None
    return Cell(int(match.group(1)), match.group(4), int(match.group(5)), float(match.group(2)), float(match.group(3)))


if __name__ == "__main__":
    main()
