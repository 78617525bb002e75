"""The tables of a run: ``results.md`` (Markdown), ``results.csv``, ``results.png`` and ``results.json``."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import asdict
from pathlib import Path

from ..data.tasks import task_rules
from ..provenance import machine_text, versions_text
from ..runtime import plot_colour, save_figure_atomic, write_json_atomic, write_text_atomic
from .methods import COT_METHODS, METHOD_RULES
from .own_data import task_title
from .paper import PAPER_QPS_SPEEDUP, PAPER_TABLE1
from .result import ReproduceResult


def _epochs_text(epochs) -> str:
    if isinstance(epochs, dict):
        return ", ".join(f"{k}: {v:g}" for k, v in epochs.items())
    return f"{epochs:g}"


def _pm(stat: dict | None) -> str:
    if not stat:
        return "–"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}" if stat["std"] is not None else f"{stat['mean']:.1f}"


METHOD_NAMES = {name: rules.title for name, rules in METHOD_RULES.items()}


def settings_flags(settings: dict) -> str:
    """Training settings as the flags of ``dhrd train`` that give them (``--input-format native --no-best-epoch``)."""
    flags = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags.append(f"{flag} {value}")
    return "`" + " ".join(flags) + "`"


def markdown(result: ReproduceResult) -> str:
    args, summary = result.arguments, result.summary
    command = result.provenance.get("command")
    # a result built in Python without a record (the tests' tables) has no machine to name
    where = [f"Machine: {machine_text(result.provenance)}; versions {versions_text(result.provenance)}."]
    where = where if result.provenance else []
    tasks = summary["tasks"]
    names = list(tasks)
    header = "| method | " + " | ".join(_column(t, tasks[t]) for t in names) + " | Avg | Rel.Δ |"
    superglue = [t for t in names if not task_rules(t).own_data]  # what Avg and the paper's table are over
    # a CoT method skipped on every task (own data) decodes nothing
    with_cot = any(
        m in COT_METHODS and any(m not in tasks[t].get("skipped", {}) for t in names) for m in args["methods"]
    )
    decoding = f"; CoT decoding: {_decoding(result)}" if with_cot else ""
    lines = [
        f"# {args.get('title') or 'dhrd reproduce'}: pooled vs DHRD{' vs CoT' if with_cot else ''} on "
        + _data_name(names),
        "",
        f"Backbone: {args['backbone'] or 'default (SmolLM2-135M-Instruct)'}; seeds {args['seeds']}; "
        f"{_epochs_text(args['epochs'])} epoch(s), lr {args['learning_rate']:g}, batch {args['batch_size']}, "
        f"alpha {args['alpha']:g}, beta {args['beta']:g}{decoding}."
        + (f" Other training settings: {settings_flags(args['train'])}." if args["train"] else ""),
        "Scores are each task's official metric in percent on the validation split (CB: mean of F1 and "
        f"accuracy; MultiRC: mean of F1a and EM{_own_data_scores(tasks)}), mean ± std over seeds; Avg is the mean "
        "over the SuperGLUE tasks a method finished; Rel.Δ is the relative change of Avg against the pooled "
        "baseline. '(on N, ±E)': scored on fewer examples than the classifiers, E the 95% sampling error of N "
        "examples. The majority floor is the score of the best constant predictor on the same examples: a model "
        "below it has learnt nothing.",
        "",
        *_headline_lines(result),
        header,
        "|---|" + "---|" * (len(names) + 2),
    ]
    average = summary["average"]
    for method in args["methods"]:
        if all(method in tasks[t].get("skipped", {}) for t in names):  # its reasons are in the caps section
            continue
        cells = [_score_cell(tasks[t]["methods"], method, len(args["seeds"])) for t in names]
        avg = average["methods"].get(method)
        rel = ""
        if method == "dhrd" and average.get("relative_gain_percent") is not None:
            rel = f"{average['relative_gain_percent']:+.2f}%"
        avg_text = "–"
        if avg:
            avg_text = f"{avg['mean']:.2f}" + (f" ({avg['tasks']} tasks)" if avg["tasks"] < len(superglue) else "")
        lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells) + f" | {avg_text} | {rel} |")
    for label, key in (("Majority floor (best constant)", "score"), ("Chance (uniform guess)", "chance")):
        values = [tasks[t].get("floor", {}).get(key) for t in names]
        if any(v is not None for v in values):
            shown = ["–" if v is None else f"{v:.1f}" for v in values]
            known = [tasks[t]["floor"][key] for t in superglue if tasks[t].get("floor")]
            mean = f"{statistics.fmean(known):.2f}" if known else "–"
            lines.append(f"| *{label}* | " + " | ".join(shown) + f" | {mean} | |")
    lines += _paired_lines(result)
    lines += _paper_lines(result, superglue) if superglue else []
    lines += _qps_lines(result)
    lines += _caps_lines(result)
    lines += [
        "",
        f"Command: `{command}`" if command else "Run from the Python API (arguments in results.json).",
        "",
        *where,
        f"Wall time: {result.seconds:.0f} s{'' if result.finished else ' so far (the run has not finished)'}.",
        "",
    ]
    return "\n".join(lines)


def _paper_lines(result: ReproduceResult, superglue: list[str]) -> list[str]:
    """DHRD's relative gain over pooled per SuperGLUE task and on average, beside the paper's."""
    tasks, average = result.summary["tasks"], result.summary["average"]
    lines = [
        "",
        "## DHRD over pooled: relative gain, beside the paper's (Table 1)",
        "",
        "| task | pooled | DHRD | ours | " + " | ".join(f"paper {b}" for b in PAPER_TABLE1) + " |",
        "|---|---|---|---|" + "---|" * len(PAPER_TABLE1),
    ]
    for task in superglue:
        entry, methods = tasks[task], tasks[task]["methods"]
        ours = entry.get("relative_gain_percent")
        paper = " | ".join(f"{entry['paper_relative_gain_percent'][b]:+.2f}%" for b in PAPER_TABLE1)
        lines.append(
            f"| {task_title(task)} | {_pm(methods.get('pooled', {}).get('score'))} "
            f"| {_pm(methods.get('dhrd', {}).get('score'))} | {'–' if ours is None else f'{ours:+.2f}%'} | {paper} |"
        )
    ours = average.get("relative_gain_percent")
    paper = " | ".join(f"{average['paper_relative_gain_percent'][b]:+.2f}%" for b in PAPER_TABLE1)
    lines.append(f"| Avg ({len(average['tasks'])} tasks) | | | {'–' if ours is None else f'{ours:+.2f}%'} | {paper} |")
    return lines


def _column(task: str, entry: dict) -> str:
    """A task's column: its name, and its split where that is not the validation split (an own-data test file)."""
    split = entry.get("split", "validation")
    return task_title(task) + ("" if split == "validation" else f" ({split})")


def _data_name(tasks: list[str]) -> str:
    own = [t for t in tasks if task_rules(t).own_data]
    if not own:
        return "SuperGLUE"
    return "own data" if len(own) == len(tasks) else "SuperGLUE and own data"


def _own_data_scores(tasks: dict) -> str:
    """How own-data tasks are scored, and on which split (their test file where they have one)."""
    own = [f"{t} on its {e['split_source']}" for t, e in tasks.items() if task_rules(t).own_data]
    return f"; own-data tasks: accuracy, {', '.join(own)}" if own else ""


def _headline_lines(result: ReproduceResult) -> list[str]:
    """Per task, in words: did the baseline learn (against the majority floor), did DHRD beat it (the paired
    interval), and how much faster is the classifier than CoT decoding."""
    lines = []
    for task, entry in result.summary["tasks"].items():
        methods, floor = entry["methods"], entry.get("floor")
        pooled = methods.get("pooled", {}).get("score")
        if not pooled or not floor:
            continue
        margin = pooled["mean"] - floor["score"]
        learnt = "learnt" if margin >= 5 else ("barely learnt" if margin > 0 else "did not learn")
        parts = [f"pooled {pooled['mean']:.1f} vs majority floor {floor['score']:.1f} ({margin:+.1f} points: {learnt})"]
        paired = (entry.get("paired") or {}).get("dhrd")
        if paired:
            parts.append(
                f"DHRD - pooled {paired['difference']:+.1f} points, 95% CI [{paired['ci'][0]:+.1f}, "
                f"{paired['ci'][1]:+.1f}] over {paired['seeds']} seed(s): {paired['verdict']}"
            )
        qps = entry.get("qps") or {}
        for cot in (m for m in COT_METHODS if m in qps and "dhrd" in qps):
            ratio = qps["dhrd"]["examples_per_s"] / qps[cot]["examples_per_s"]
            parts.append(f"the DHRD classifier serves {ratio:.0f}x the examples/s of {METHOD_NAMES[cot]}")
        lines.append(f"- **{task_title(task)}**: " + "; ".join(parts) + ".")
    return [*lines, ""] if lines else []


def _sampling_error(score: float, examples: int) -> float:
    """Half-width of the 95% Wilson interval of an accuracy on ``examples`` examples, in points (unlike the
    normal approximation it is not 0 for a score of 0 or 100)."""
    p, n, z = min(max(score / 100, 0.0), 1.0), max(examples, 1), 1.96
    return 100 * z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)


def _paired_lines(result: ReproduceResult) -> list[str]:
    tasks = result.summary["tasks"]
    rows = [(t, m, c) for t, e in tasks.items() for m, c in (e.get("paired") or {}).items()]
    if not rows:
        return []
    lines = [
        "",
        "## Paired with pooled: the difference in points, with a 95% confidence interval",
        "",
        "Same seeds, same training and scored examples. The interval is a bootstrap over the scored examples "
        "and seeds (2,000 resamples) of each task's official score; a difference whose interval holds 0 is no "
        "measurable difference.",
        "",
        "| task | split | method | seeds | examples | floor | pooled | method | difference | 95% CI | per seed "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, method, c in rows:
        methods = tasks[task]["methods"]
        floor = tasks[task].get("floor", {}).get("score")
        lines.append(
            f"| {task_title(task)} | {tasks[task].get('split', 'validation')} | {METHOD_NAMES[method]} | "
            f"{c['seeds']} | {c['examples']} | "
            f"{'–' if floor is None else f'{floor:.1f}'} | {_pm(methods.get('pooled', {}).get('score'))} | "
            f"{_pm(methods.get(method, {}).get('score'))} | {c['difference']:+.2f} | "
            f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] | {', '.join(f'{d:+.1f}' for d in c['per_seed'])} | "
            f"{c['verdict']} |"
        )
    return lines


def _score_cell(methods: dict, method: str, seeds: int) -> str:
    """mean ± std; the number of examples where a method was scored on fewer than the others (CoT), and the
    number of seeds where a run stopped before every seed finished (zero-shot CoT has one cell by design)."""
    entry = methods.get(method)
    if not entry:
        return "–"
    most = max(m["eval_examples"] or 0 for m in methods.values())
    fewer = entry["eval_examples"] and entry["eval_examples"] < most
    margin = f", ±{_sampling_error(entry['score']['mean'], entry['eval_examples']):.0f}" if fewer else ""
    text = _pm(entry["score"]) + (f" (on {entry['eval_examples']}{margin})" if fewer else "")
    n = entry["score"]["n"]
    return text + (f" [{n}/{seeds} seeds]" if not METHOD_RULES[method].one_cell_per_task and n < seeds else "")


def _decoding(result: ReproduceResult) -> str:
    """The CoT decoding settings the cells used (greedy budgets are fitted per task)."""
    used = {
        f"{record['task']}: {record['result']['setting']}"
        for record in result.cells.values()
        if record["kind"] == "cot"
    }
    return "; ".join(sorted(used)) or result.arguments["cot_setting"]


def _qps_lines(result: ReproduceResult) -> list[str]:
    tasks = result.summary["tasks"]
    measured = {t: e["qps"] for t, e in tasks.items() if e.get("qps")}
    if not measured:
        return []
    methods = [m for m in result.arguments["methods"] if any(m in q for q in measured.values())]
    lines = [
        "",
        f"## Throughput: examples/s at batch {result.arguments['qps_batch_size']}, one benchmark run per task "
        f"(first seed's models, first {result.arguments['qps_examples']} examples of each task's scored split)",
        "",
        "| task | "
        + " | ".join(METHOD_NAMES[m] for m in methods)
        + "".join(f" | DHRD / {METHOD_NAMES[m]}" for m in COT_METHODS if m in methods)
        + " |",
        "|---|" + "---|" * (len(methods) + len([m for m in COT_METHODS if m in methods])),
    ]
    for task, q in measured.items():
        cells = [f"{q[m]['examples_per_s']:.3g}" if m in q else "–" for m in methods]
        for m in (m for m in COT_METHODS if m in methods):
            ratio = "dhrd" in q and m in q and q["dhrd"]["examples_per_s"] / q[m]["examples_per_s"]
            cells.append(f"{ratio:.1f}x" if ratio else "–")
        lines.append(f"| {task_title(task)} | " + " | ".join(cells) + " |")
    lines.append(f"\nThe paper's speed-up of the classifier over CoT decoding: {PAPER_QPS_SPEEDUP}.")
    return lines


def _caps_lines(result: ReproduceResult) -> list[str]:
    lines = ["", "## What each cell saw (caps are never hidden)", ""]
    for task, entry in result.summary["tasks"].items():
        caps = entry["caps"]
        unit = " (questions)" if task_rules(task).per_answer else ""
        parts = [f"{k.replace('_', ' ')} {v}{unit}" for k, v in caps.items() if k != "epochs"] or ["no caps"]
        methods = entry["methods"]
        seen = ", ".join(f"{m}: {v['eval_examples']} eval examples" for m, v in methods.items() if v["eval_examples"])
        line = f"- **{task_title(task)}**: scored on {entry.get('split_source', 'the validation split')}; "
        line += "; ".join(parts) + (f" ({seen})" if seen else "")
        for method, why in (entry.get("skipped") or {}).items():
            line += f"; {method} skipped ({why})"
        source = result.rationales.get(task)
        if source:
            line += (
                f"; rationales: {source.get('teacher') or source.get('origin', 'reference set')} ({source['source']})"
            )
        for method in (m for m in COT_METHODS if m in methods):
            line += _cot_answers(method, methods[method])
        without = (methods.get("dhrd") or {}).get("rows_without_rationale")
        if without:
            line += f"; {without} DHRD training rows had no rationale (classification loss only)"
        if entry.get("not_comparable"):
            line += f". **Not comparable to the paper**: {entry['not_comparable']}"
        lines.append(line)
    return lines


def _cot_answers(method: str, counts: dict) -> str:
    """How a CoT method's examples were answered, over its seeds: parsed from the text or by likelihood
    (cells written before answers were chosen by likelihood scored their failures as wrong)."""
    if "likelihood_examples" in counts:
        return (
            f"; {method} answers (all seeds): parsed {counts['parsed_examples']}, by likelihood "
            f"{counts['likelihood_examples']} ({counts['unparsed_rows']} unparseable rows, "
            f"{counts['ambiguous_examples']} examples answered Yes for no or several candidates)"
        )
    return (
        f"; {method} outputs (all seeds): {counts['unparsed_rows']} unparseable rows, "
        f"{counts['ambiguous_examples']} examples answered Yes for no or several candidates (scored wrong)"
    )


def csv_rows(result: ReproduceResult) -> list[dict]:
    rows = []
    for task, entry in result.summary["tasks"].items():
        for method, values in entry["methods"].items():
            qps = (entry.get("qps") or {}).get(method, {})
            score = values["score"]
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "split": entry.get("split", "validation"),
                    "score_mean": score["mean"],
                    "score_std": score["std"],
                    "seeds": score["n"],
                    "scores": " ".join(str(v) for v in score["values"]),
                    **{f"metric_{k}": v for k, v in values["metrics"].items()},
                    "relative_gain_percent": entry.get("relative_gain_percent") if method == "dhrd" else None,
                    "majority_floor": (entry.get("floor") or {}).get("score"),
                    "chance": (entry.get("floor") or {}).get("chance"),
                    "difference_vs_pooled": (entry.get("paired") or {}).get(method, {}).get("difference"),
                    "ci95_low": ((entry.get("paired") or {}).get(method, {}).get("ci") or [None])[0],
                    "ci95_high": ((entry.get("paired") or {}).get(method, {}).get("ci") or [None, None])[1],
                    "qps": qps.get("examples_per_s"),
                    "eval_examples": values["eval_examples"],
                    "max_train_examples": entry["caps"].get("max_train_examples"),
                    "max_eval_examples": entry["caps"].get("max_eval_examples"),
                    "not_comparable": entry.get("not_comparable"),
                }
            )
    return rows


def write_results(result: ReproduceResult, directory: Path) -> None:
    """results.json, .md, .csv and .png, each written to a temporary file and renamed into place."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "results.json", asdict(result))
    write_text_atomic(directory / "results.md", markdown(result))
    rows = csv_rows(result)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(directory / "results.csv", buffer.getvalue())
    plot(result, directory / "results.png")


def plot(result: ReproduceResult, path: Path) -> Path | None:
    """Left: each task's score per method (error bars: std over seeds). Right: examples/s per method (log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = result.summary["tasks"]
    names = [t for t, e in tasks.items() if e["methods"]]
    if not names:
        return None
    methods = [m for m in result.arguments["methods"] if any(m in tasks[t]["methods"] for t in names)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(methods)
    x = np.arange(len(names))
    for k, method in enumerate(methods):
        stats = [tasks[t]["methods"].get(method, {}).get("score") for t in names]
        means = [s["mean"] if s else 0 for s in stats]
        errors = [s["std"] or 0 if s else 0 for s in stats]
        left.bar(x + k * width, means, width, yerr=errors, label=METHOD_NAMES[method], color=plot_colour(method))
    for i, task in enumerate(names):
        floor = tasks[task].get("floor")
        if floor:
            span = (x[i] - width / 2, x[i] + width * (len(methods) - 0.5))
            left.hlines(
                floor["score"], *span, colors="k", linestyles="--", lw=1.2, label="majority floor" if i == 0 else None
            )
            left.hlines(
                floor["chance"], *span, colors="grey", linestyles=":", lw=1.2, label="chance" if i == 0 else None
            )
    left.set_xticks(x + width * (len(methods) - 1) / 2, [_column(t, tasks[t]) for t in names])
    left.set_ylabel("score on the scored split (%)")
    left.set_ylim(0, 100)
    left.legend(fontsize=8)
    left.set_title("task score, mean ± std over seeds")
    measured = [t for t in names if tasks[t].get("qps")]
    for k, method in enumerate(methods):
        speeds = [tasks[t]["qps"].get(method, {}).get("examples_per_s", 0) for t in measured]
        right.bar(np.arange(len(measured)) + k * width, speeds, width, color=plot_colour(method))
    right.set_xticks(np.arange(len(measured)) + width * (len(methods) - 1) / 2, [task_title(t) for t in measured])
    right.set_yscale("log")
    right.set_ylabel(f"examples/s (batch {result.arguments['qps_batch_size']}, log)")
    right.set_title("throughput")
    machine = result.provenance.get("machine", {})
    where = machine.get("gpu") or machine.get("cpu", "")
    fig.suptitle(f"{result.arguments.get('title') or 'dhrd reproduce'} - {where}")
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)
