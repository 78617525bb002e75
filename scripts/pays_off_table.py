"""Does DHRD pay off? One table over the variant studies (`scripts/variants_study.py`): per task and budget, the
majority floor, pooled, DHRD with the paper's alpha 1, the best fixed DHRD setting, and DHRD auto (`--alpha
auto`), each with its paired difference to pooled, 95% CI and seeds, and training time relative to pooled.

    python scripts/pays_off_table.py --fixed dhrd-a0.25 \
        CB=results/variants-cb-smollm2-cpu.json RTE=results/variants-rte-smollm2-cpu.json \
        ComVE=results/variants-comve-smollm2-cpu.json --out results/dhrd-pays-off-smollm2-cpu

Each study argument is NAME=RESULTS_JSON; every budget of a study is a row. Cells with fewer seeds than
`--min-seeds` are shown but marked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dhrd.provenance import command_line
from dhrd.runtime import write_json_atomic, write_text_atomic

COLUMNS = (("dhrd", "DHRD alpha 1 (paper)"), ("fixed", "best fixed DHRD"), ("auto", "DHRD auto"))


def budget_rows(name: str, study: dict, fixed: str) -> list[dict]:
    rows = []
    by_budget: dict[str, dict[str, dict]] = {}
    for row in study["rows"]:
        by_budget.setdefault(row["budget"], {})[row["variant"]] = row
    for budget, variants in by_budget.items():
        pooled = variants.get("pooled")
        if pooled is None or not pooled["scores"]:
            continue
        cells = {"dhrd": variants.get("dhrd"), "fixed": variants.get(fixed), "auto": variants.get("auto")}
        rows.append(
            {
                "task": name,
                "budget": budget,
                "floor": study["floor"],
                "scored_split": study["scored_split"],
                "pooled": {"mean": pooled["mean"], "seeds": len(pooled["scores"])},
                **{key: _cell(cell) for key, cell in cells.items()},
            }
        )
    return rows


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
        "chosen": row.get("chosen") or [],
    }


def markdown(rows: list[dict], fixed: str, min_seeds: int, command: str) -> str:
    lines = [
        "# Does DHRD pay off? SmolLM2-135M-Instruct on 2 CPU cores",
        "",
        f"Each DHRD column: its mean score, its paired difference to pooled (points, 95% bootstrap CI over scored "
        f"examples and seeds), the seeds, and its training time relative to pooled's. Best fixed setting: `{fixed}`.",
        f"Cells with fewer than {min_seeds} paired seeds are marked (prelim).",
        "",
        "| task | budget | floor | pooled | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        cells = []
        for key, _ in COLUMNS:
            c = r[key]
            if c is None:
                cells.append("")
                continue
            mark = "" if c["seeds"] >= min_seeds else " (prelim)"
            time = f", {c['time_vs_pooled']:.2f}x time" if c.get("time_vs_pooled") else ""
            chosen = f", chose {'; '.join(c['chosen'])}" if c["chosen"] else ""
            cells.append(
                f"{c['mean']:.1f}: {c['difference']:+.1f} [{c['ci'][0]:+.1f}, {c['ci'][1]:+.1f}] "
                f"{c['verdict']}, {c['seeds']} seeds{time}{chosen}{mark}"
            )
        pooled = r["pooled"]
        lines.append(
            f"| {r['task']} | {r['budget']} | {r['floor']:.1f} | {pooled['mean']:.1f} ({pooled['seeds']} seeds) | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="NAME=RESULTS_JSON")
    parser.add_argument("--fixed", default="dhrd-a0.25", help="the best fixed DHRD setting (a variant name)")
    parser.add_argument("--min-seeds", type=int, default=3)
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    rows = []
    for spec in options.studies:
        name, path = spec.split("=", 1)
        rows += budget_rows(name, json.loads(Path(path).read_text()), options.fixed)
    command = command_line(program=("python", "scripts/pays_off_table.py"))
    out = Path(options.out)
    write_json_atomic(out.with_suffix(".json"), {"rows": rows, "fixed": options.fixed, "command": command})
    write_text_atomic(out.with_suffix(".md"), markdown(rows, options.fixed, options.min_seeds, command))
    print(markdown(rows, options.fixed, options.min_seeds, command))


if __name__ == "__main__":
    main()
