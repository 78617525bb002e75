"""Should the student's input carry --instruction? Pooled SmolLM2-135M on CB exported as a plain CSV (your-own-
data shape: integer labels named by --label-names), with and without the instruction at the end of each input,
paired by seed on the same examples; the accuracy difference with a bootstrap interval over validation examples
and seeds. Resumable: each finished run is kept, run the same command again to continue.

    python scripts/own_data_instruction.py            # writes results/own-data-instruction-smollm2-cpu.{md,json}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from superglue_to_csv import EXPORTS, export  # noqa: E402

from dhrd.data.inputs import load_file_examples  # noqa: E402
from dhrd.data.tasks import TASKS  # noqa: E402
from dhrd.runtime import write_json_atomic, write_text_atomic  # noqa: E402
from dhrd.stats import example_statistics, paired_difference  # noqa: E402
from dhrd.training.run import train  # noqa: E402
from dhrd.training.training_args import DHRDTrainingArguments  # noqa: E402

RUNS = Path("runs/own-data-instruction")
OUT = Path("results/own-data-instruction-smollm2-cpu")
VARIANTS = {"instruction in input": True, "no instruction": False}


def arguments(data: dict[str, Path], seed: int, in_input: bool, epochs: float, lr: float) -> DHRDTrainingArguments:
    columns, instruction = EXPORTS["cb"]
    name = "with" if in_input else "without"
    return DHRDTrainingArguments(
        output_dir=str(RUNS / f"{name}-s{seed}"),
        task=None,
        train_file=str(data["train"]),
        validation_file=str(data["validation"]),
        text_column=columns[0],
        text_pair_column=columns[1],
        id_column="id",
        label_map=",".join(f"{i}={n}" for i, n in enumerate(TASKS["cb"].native_labels)),
        instruction=instruction,
        instruction_in_input=in_input,
        method="pooled",
        seed=seed,
        subset_seed=1,
        num_train_epochs=epochs,
        learning_rate=lr,
        best_epoch=False,  # the validation split is also the scored split: no choice made on it
        max_length=768,
        truncation="left",
        save_total_limit=1,
    )


def scored(args: DHRDTrainingArguments) -> dict | None:
    """A finished run's per-example statistics (accuracy) and its metrics."""
    run = Path(args.output_dir)
    if not (run / "metrics.json").is_file():
        return None
    spec = args.data_spec()
    spec.validate()
    names = spec.label_names()
    examples = load_file_examples(spec.validation_file, spec.columns, names)
    saved = json.loads((run / "validation-predictions.json").read_text())
    probs = dict(zip(saved["ids"], saved["probs"]))
    matrix = np.array([probs[e.id] for e in examples])
    return {
        "stats": example_statistics("custom", examples, matrix, "native"),
        "metrics": json.loads((run / "metrics.json").read_text()),
        "labels": [e.label for e in examples],
    }


def summarise(runs: dict[tuple[str, int], dict], seeds: list[int]) -> dict:
    cells = []
    for (variant, seed), result in sorted(runs.items()):
        score = result["metrics"]["tasks"]["custom"]
        cells.append(
            {
                "variant": variant,
                "seed": seed,
                "accuracy": round(100 * float(result["stats"]["correct"].mean()), 2),
                **{k: score[k] for k in ("accuracy", "macro_f1") if k in score},
                "train_seconds": result["metrics"].get("train_seconds"),
            }
        )
    paired = [s for s in seeds if all((v, s) in runs for v in VARIANTS)]
    summary: dict = {"cells": cells, "paired_seeds": paired}
    if runs:
        labels = next(iter(runs.values()))["labels"]
        counts = np.bincount(labels)
        summary["majority_floor"] = round(100 * counts.max() / counts.sum(), 2)
        summary["chance"] = round(100 / len(TASKS["cb"].native_labels), 2)
    if paired:
        with_, without = ([runs[(v, s)]["stats"] for s in paired] for v in ("instruction in input", "no instruction"))
        summary["difference"] = paired_difference("custom", without, with_)
    return summary


def markdown(summary: dict, command: str) -> str:
    lines = [
        "# Own data: should the student's input carry --instruction?",
        "",
        "CB exported as a plain CSV (`scripts/superglue_to_csv.py --task cb`: premise, hypothesis, integer labels",
        "named with `--label-names 0=entailment,1=contradiction,2=neutral`), pooled SmolLM2-135M-Instruct, all 250",
        "training rows, 1 epoch, LoRA, lr 1e-3, the last epoch scored on the 56 validation rows. The same seeds and",
        "examples with and without the instruction (`Does the premise entail the hypothesis, contradict it, or",
        "neither?`) after each input. Accuracy in percent.",
        "",
        "| variant | seed | accuracy | macro-F1 | train s |",
        "|---|---|---|---|---|",
    ]
    for c in summary["cells"]:
        f1 = c.get("macro_f1")
        lines.append(
            f"| {c['variant']} | {c['seed']} | {c['accuracy']:.1f} | {'' if f1 is None else f'{f1:.1f}'} "
            f"| {c['train_seconds'] or ''} |"
        )
    if "majority_floor" in summary:
        lines += ["", f"Majority floor {summary['majority_floor']:.1f}, chance {summary['chance']:.1f}."]
    for variant in VARIANTS:
        scores = [c["accuracy"] for c in summary["cells"] if c["variant"] == variant]
        if scores:
            lines.append(
                f"- {variant}: {np.mean(scores):.1f} ± {np.std(scores, ddof=1) if len(scores) > 1 else 0:.1f} "
                f"over {len(scores)} seed(s)"
            )
    d = summary.get("difference")
    if d:
        lines += [
            "",
            f"With minus without, paired over seeds {summary['paired_seeds']}: {d['difference']:+.1f} points, 95% CI "
            f"[{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] (bootstrap over validation examples and seeds), per seed "
            f"{', '.join(f'{x:+.1f}' for x in d['per_seed'])}: {d['verdict']}.",
        ]
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--render", action="store_true", help="only rewrite the tables from finished runs")
    options = parser.parse_args()
    seeds = [int(s) for s in options.seeds.split(",")]
    data = export("cb", RUNS / "cb-csv")
    command = "python scripts/own_data_instruction.py" + (
        "" if options.seeds == "1,2,3" else f" --seeds {options.seeds}"
    )

    def save() -> None:
        runs = {}
        for seed in seeds:
            for variant, in_input in VARIANTS.items():
                result = scored(arguments(data, seed, in_input, options.epochs, options.lr))
                if result:
                    runs[(variant, seed)] = result
        summary = summarise(runs, seeds)
        write_json_atomic(OUT.with_suffix(".json"), {**summary, "command": command})
        write_text_atomic(OUT.with_suffix(".md"), markdown(summary, command))

    save()
    if options.render:
        return
    for seed in seeds:
        for in_input in VARIANTS.values():
            args = arguments(data, seed, in_input, options.epochs, options.lr)
            if not (Path(args.output_dir) / "metrics.json").is_file():
                train(args)
                save()


if __name__ == "__main__":
    main()
