"""Does DHRD pay off? One table over the variant studies (`scripts/variants_study.py`): per task and budget, the
majority floor, pooled with each head (the paper's MLP; linear, dhrd's default), DHRD with the paper's alpha 1 and
head, the best fixed DHRD setting, and DHRD auto (`--alpha auto`: `auto-linear`, else the MLP head's `auto`), each
with its paired difference to pooled of its own head, 95% CI and seeds, and training time relative to that pooled.
Below it, the default head's evidence: per task, pooled's and DHRD's linear head against their MLP head, by seed.

    python scripts/pays_off_table.py --fixed dhrd-a0.25 \
        CB=results/variants-cb-smollm2-cpu.json RTE=results/variants-rte-smollm2-cpu.json \
        ComVE=results/variants-comve-smollm2-cpu.json --out results/dhrd-pays-off-smollm2-cpu

Each study argument is NAME=RESULTS_JSON, or NAME=RESULTS_JSON@BUDGET for one budget of it; every budget is a row.
A NAME given twice for the same budget merges the studies' columns (each cell stays paired with the pooled runs of
its own study: `--alpha auto` studies run apart from the fixed variants). Cells with fewer seeds than `--min-seeds`
are shown but marked, and so is a row whose pooled baseline did not learn (its differences measure nothing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from variants_study import peak_memory, time_text, time_vs_pooled  # the study's own readings (this script's folder)

from dhrd.errors import DHRDInputError, exit_on_input_error, missing_file
from dhrd.provenance import command_line
from dhrd.runtime import write_json_atomic, write_text_atomic

POOLED = (("pooled", "pooled"), ("pooled_linear", "pooled-linear"))  # (column, variant): the baseline of each head
COLUMNS = (("dhrd", "DHRD alpha 1 (paper)"), ("fixed", "best fixed DHRD"), ("auto", "DHRD auto"))
# the default head's evidence: each method's linear-head variant against its MLP-head twin, paired by seed
HEADS = (("head_pooled", "pooled-linear"), ("head_dhrd", "dhrd-linear"))


def budget_rows(name: str, study: dict, fixed: str, only_budget: str | None = None) -> list[dict]:
    rows = []
    by_budget: dict[str, dict[str, dict]] = {}
    for row in study["rows"]:
        by_budget.setdefault(row["budget"], {})[row["variant"]] = row
    if only_budget is not None and only_budget not in by_budget:
        raise DHRDInputError(f"{name}: no budget {only_budget!r} in the study (it has {', '.join(by_budget)})")
    for budget, variants in by_budget.items():
        if only_budget is not None and budget != only_budget:
            continue
        baselines = {key: _pooled(variants.get(variant)) for key, variant in POOLED}
        if not any(baselines.values()):
            continue
        # the default head's search where its cells have landed, else the MLP head's
        auto = next((variants[v] for v in ("auto-linear", "auto") if (variants.get(v) or {}).get("paired")), None)
        cells = {
            key: _same_head(row, variants)
            for key, row in (("dhrd", variants.get("dhrd")), ("fixed", variants.get(fixed)), ("auto", auto))
        }
        rows.append(
            {
                "task": name,
                "budget": budget,
                "floor": study["floor"],
                "scored_split": study["scored_split"],
                **baselines,
                **{key: _cell(cell) for key, cell in cells.items()},
                **{key: _head(variants.get(variant)) for key, variant in HEADS},
            }
        )
    return rows


def _head(row: dict | None) -> dict | None:
    """A linear-head variant minus the MLP head's, paired by seed (the study's ``vs_mlp``), and the seeds it pairs."""
    found = (row or {}).get("vs_mlp")
    if not found:
        return None
    seeds = found.get("paired_seeds") or row["seeds"]  # a study kept before differences named their seeds: all
    keys = ("difference", "ci", "verdict", "per_seed")
    return {**{key: found[key] for key in keys}, "seeds": len(seeds), "paired_seeds": seeds}


def _same_head(row: dict | None, variants: dict[str, dict]) -> dict | None:
    """A linear-head variant of a study written before each variant was paired with pooled of its own head (its
    "paired" is against the MLP's pooled): paired with pooled-linear instead, from the row's own record of it."""
    if row is None or "baseline" in row or not row["variant"].endswith("-linear") or not row.get("vs_pooled_linear"):
        return row
    base = variants["pooled-linear"]
    seconds = dict(zip(base["seeds"], base["train_seconds"]))
    timed = time_vs_pooled([(s, seconds[s], own) for s, own in zip(row["seeds"], row["train_seconds"]) if s in seconds])
    return {**row, "paired": row["vs_pooled_linear"], "baseline": "pooled-linear", **timed}


def _pooled(row: dict | None) -> dict | None:
    if row is None or not row["scores"]:
        return None
    return {"mean": row["mean"], "seeds": len(row["scores"]), "learnt": row["learnt"], "peak_gb": peak_memory(row)}


def merged(rows: list[dict]) -> list[dict]:
    """One row per task and budget: a later study's cells fill the columns an earlier one left empty."""
    by_key: dict[tuple[str, str], dict] = {}
    for row in rows:
        kept = by_key.setdefault((row["task"], row["budget"]), row)
        for key in [k for k, _ in POOLED] + [k for k, _ in COLUMNS] + [k for k, _ in HEADS]:
            if kept[key] is None or (key == "auto" and _auto_rank(row[key]) > _auto_rank(kept[key])):
                kept[key] = row[key]
    return list(by_key.values())


def _auto_rank(cell: dict | None) -> tuple:
    """Which auto cell a merged row shows: the default (linear) head's search over the MLP's, then more seeds."""
    return (-1,) if cell is None else (cell.get("variant") == "auto-linear", cell["seeds"])


def _cell(row: dict | None) -> dict | None:
    if row is None or not row.get("paired"):
        return None
    paired = row["paired"]
    return {
        "mean": row["mean"],
        "difference": paired["difference"],
        "ci": paired["ci"],
        "verdict": paired["verdict"],
        "seeds": paired["seeds"],
        "time_vs_pooled": row.get("time_vs_pooled"),
        **{key: row[key] for key in ("time_seeds", "untimed_seeds") if key in row},
        "chosen": row.get("chosen") or [],
        "variant": row["variant"],
        "baseline": row.get("baseline", "pooled"),
        "peak_gb": peak_memory(row),
    }


def markdown(rows: list[dict], fixed: str, min_seeds: int, command: str) -> str:
    lines = [
        "# Does DHRD pay off? SmolLM2-135M-Instruct on 2 CPU cores",
        "",
        "Pooled with each head: the paper's MLP (`--head mlp`) and linear (`--head linear`, dhrd's default). Each DHRD "
        "column: its variant, its mean score, its paired difference to pooled with the same head (what `--method "
        "pooled` gives beside it; points, 95% bootstrap CI over scored examples and seeds), the seeds, and its "
        "training time relative to that pooled's, and the most resident memory of any of its cells (≤: a cell that "
        "kept its study process's peak so far, an upper bound; ≥: a cell resumed from a checkpoint that kept no peak, "
        f"its last process's only, a lower bound). Best fixed setting: `{fixed}`.",
        f"Cells with fewer than {min_seeds} paired seeds are marked (prelim); a budget at which pooled did not learn "
        "(mean below floor + 5) is marked: its differences measure nothing.",
        "",
        "| task | budget | floor | pooled (MLP) | pooled-linear | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        cells = []
        for key, _ in COLUMNS:
            c = r[key]
            if c is None:
                cells.append("")
                continue
            mark = "" if c["seeds"] >= min_seeds else " (prelim)"
            cost = f", {time_text(c, ' time')}" if c.get("time_vs_pooled") else ""
            cost += f", {c['peak_gb']} GB" if c.get("peak_gb") else ""
            chosen = f", chose {'; '.join(c['chosen'])}" if c["chosen"] else ""
            cells.append(
                f"`{c.get('variant', key)}` {c['mean']:.1f}: {c['difference']:+.1f} [{c['ci'][0]:+.1f}, "
                f"{c['ci'][1]:+.1f}] {c['verdict']} vs {c.get('baseline', 'pooled')}, {_seeds(c['seeds'])}{cost}"
                f"{chosen}{mark}"
            )
        pooled = " | ".join(_pooled_cell(r.get(key)) for key, _ in POOLED)
        lines.append(f"| {r['task']} | {r['budget']} | {r['floor']:.1f} | {pooled} | " + " | ".join(cells) + " |")
    lines += head_section(rows, min_seeds)
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def head_section(rows: list[dict], min_seeds: int) -> list[str]:
    """The default head's evidence: per task, each method's linear head minus its MLP head, paired by seed, and how
    many paired seeds the linear head won, lost and tied over the table (each task's interval is its own; no
    interval over tasks is drawn: their scored rows differ in number and kind)."""
    if not any(r.get(key) for r in rows for key, _ in HEADS):
        return []
    lines = [
        "",
        "## The default head: linear minus the paper's MLP, each method paired by seed",
        "",
        "| task | budget | pooled: linear minus MLP | DHRD alpha 1: linear minus MLP |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if any(r.get(key) for key, _ in HEADS):
            texts = (_head_text(r.get(key), min_seeds) for key, _ in HEADS)
            lines.append(f"| {r['task']} | {r['budget']} | " + " | ".join(texts) + " |")
    counts = []
    for key, variant in HEADS:
        per_seed = [d for r in rows if r.get(key) for d in r[key]["per_seed"]]
        if per_seed:
            won, lost = sum(d > 0 for d in per_seed), sum(d < 0 for d in per_seed)
            counts.append(
                f"{variant.removesuffix('-linear')}: the linear head ahead on {won} of {len(per_seed)} paired seeds, "
                f"behind on {lost}, level on {len(per_seed) - won - lost}"
            )
    return [*lines, "", "Over the table's tasks: " + "; ".join(counts) + "."]


def _head_text(head: dict | None, min_seeds: int) -> str:
    if head is None:
        return ""
    seeds = ",".join(map(str, head["paired_seeds"]))
    mark = "" if head["seeds"] >= min_seeds else " (prelim)"
    low, high = head["ci"]
    plural = "s" if head["seeds"] > 1 else ""
    return f"{head['difference']:+.1f} [{low:+.1f}, {high:+.1f}] {head['verdict']}, seed{plural} {seeds}{mark}"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def _pooled_cell(pooled: dict | None) -> str:
    if pooled is None:
        return ""
    unlearnt = "" if pooled.get("learnt", True) else ", not learnt"
    peak = f", {pooled['peak_gb']} GB" if pooled.get("peak_gb") else ""
    return f"{pooled['mean']:.1f} ({_seeds(pooled['seeds'])}{peak}{unlearnt})"


def read_study(spec: str) -> tuple[str, dict, str | None]:
    """``NAME=RESULTS_JSON[@BUDGET]``: the task's name, the study's results and the one budget asked for."""
    name, equals, path = spec.partition("=")
    path, _, budget = path.partition("@")
    if not equals or not name or not path:
        raise DHRDInputError(f"{spec}: not NAME=RESULTS_JSON or NAME=RESULTS_JSON@BUDGET")
    if not Path(path).is_file():
        raise missing_file(path, "study's results (a variants_study.py --out, .json)")
    try:
        return name, json.loads(Path(path).read_text()), budget or None
    except json.JSONDecodeError as error:
        raise DHRDInputError(f"{path}: not JSON ({error})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="NAME=RESULTS_JSON or NAME=RESULTS_JSON@BUDGET")
    parser.add_argument("--fixed", default="dhrd-a0.25", help="the best fixed DHRD setting (a variant name)")
    parser.add_argument("--min-seeds", type=int, default=3)
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    rows = []
    for spec in options.studies:
        name, study, budget = read_study(spec)
        rows += budget_rows(name, study, options.fixed, budget)
    rows = merged(rows)
    command = command_line(program=("python", "scripts/pays_off_table.py"))
    out = Path(options.out)
    write_json_atomic(out.with_suffix(".json"), {"rows": rows, "fixed": options.fixed, "command": command})
    write_text_atomic(out.with_suffix(".md"), markdown(rows, options.fixed, options.min_seeds, command))
    print(markdown(rows, options.fixed, options.min_seeds, command))


if __name__ == "__main__":
    exit_on_input_error(main, "pays_off_table")
