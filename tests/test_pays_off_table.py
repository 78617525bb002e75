"""The pays-off table: one row per task and budget, columns merged from several studies, unlearnt rows marked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "pays_off_table.py"


def _row(budget: str, variant: str, mean: float, difference: float | None = None, learnt: bool = True) -> dict:
    row = {"budget": budget, "variant": variant, "mean": mean, "scores": [mean] * 3, "learnt": learnt}
    if difference is not None:
        row["paired"] = {"difference": difference, "ci": [difference - 2, difference + 2], "verdict": "x", "seeds": 3}
        row["time_vs_pooled"] = 1.5
    return row


def _study(path: Path, rows: list[dict]) -> str:
    path.write_text(json.dumps({"floor": 50.0, "scored_split": "test", "rows": rows}))
    return str(path)


def test_one_budget_of_a_study_and_an_auto_study_merge_into_one_row(tmp_path):
    fixed = _study(
        tmp_path / "fixed.json",
        [
            _row("n1000", "pooled", 57.0),
            _row("n1000", "dhrd", 56.6, -0.4),
            _row("n1000", "dhrd-linear", 61.9, 4.9),
            _row("n5000", "pooled", 50.4, learnt=False),
            _row("n5000", "dhrd", 84.4, 34.0),
        ],
    )
    auto = _study(tmp_path / "auto.json", [_row("n1000", "pooled", 57.5), _row("n1000", "auto", 58.0, 0.5)])
    out = tmp_path / "table"
    command = [sys.executable, str(SCRIPT), "--fixed", "dhrd-linear", f"T={fixed}@n1000", f"T={auto}", f"U={fixed}"]
    subprocess.run([*command, "--out", str(out)], check=True, capture_output=True, text=True)
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["task"], r["budget"]) for r in rows] == [("T", "n1000"), ("U", "n1000"), ("U", "n5000")]
    first = rows[0]
    assert first["pooled"]["mean"] == 57.0  # the first study's pooled; each cell is paired within its own study
    assert (first["dhrd"]["difference"], first["fixed"]["difference"], first["auto"]["difference"]) == (-0.4, 4.9, 0.5)
    table = out.with_suffix(".md").read_text()
    assert "50.4 (3 seeds, not learnt)" in table and "57.0 (3 seeds) |" in table


def test_a_budget_the_study_lacks_is_one_line(tmp_path):
    study = _study(tmp_path / "s.json", [_row("n1000", "pooled", 57.0)])
    done = subprocess.run(
        [sys.executable, str(SCRIPT), f"T={study}@n9", "--out", str(tmp_path / "t")], capture_output=True, text=True
    )
    assert done.returncode == 2 and "no budget 'n9'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("spec", "says"),
    [("T", "not NAME=RESULTS_JSON"), ("T=missing.json", "missing.json: study's results"), ("T={bad}", "not JSON")],
)
def test_a_bad_study_argument_is_one_line_naming_it(tmp_path, spec, says):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    command = [sys.executable, str(SCRIPT), spec.format(bad=bad), "--out", str(tmp_path / "t")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("pays_off_table: ") and says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_each_head_has_its_pooled_column_and_auto_linear_is_preferred(tmp_path):
    linear = dict(baseline="pooled-linear")
    study = _study(
        tmp_path / "s.json",
        [
            _row("n1000", "pooled", 57.0),
            _row("n1000", "pooled-linear", 56.0),
            _row("n1000", "auto", 55.0, -2.0),
            {**_row("n1000", "auto-linear", 60.0, 4.0), **linear},
            {**_row("n1000", "dhrd-linear", 61.0, 5.0), **linear},
        ],
    )
    out = tmp_path / "t"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--fixed", "dhrd-linear", f"T={study}", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    (row,) = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert (row["pooled"]["mean"], row["pooled_linear"]["mean"]) == (57.0, 56.0)
    # before auto-linear's cells land (a row without scores), the MLP head's auto fills the column
    early = _study(
        tmp_path / "early.json",
        [
            _row("n1000", "pooled", 57.0),
            _row("n1000", "auto", 55.0, -2.0),
            {"budget": "n1000", "variant": "auto-linear", "mean": None, "scores": [], "learnt": False},
        ],
    )
    subprocess.run(
        [sys.executable, str(SCRIPT), f"T={early}", "--out", str(tmp_path / "e")], check=True, capture_output=True
    )
    assert json.loads((tmp_path / "e.json").read_text())["rows"][0]["auto"]["variant"] == "auto"
    # merged with a study whose auto-linear has landed: that one is shown, whichever study came first
    both = [f"T={early}", f"T={study}"]
    subprocess.run([sys.executable, str(SCRIPT), *both, "--out", str(tmp_path / "b")], check=True, capture_output=True)
    assert json.loads((tmp_path / "b.json").read_text())["rows"][0]["auto"]["variant"] == "auto-linear"
    assert (row["auto"]["variant"], row["auto"]["difference"], row["auto"]["baseline"]) == (
        "auto-linear",
        4.0,
        linear["baseline"],
    )
    table = out.with_suffix(".md").read_text()
    assert "| 57.0 (3 seeds) | 56.0 (3 seeds) |" in table
    assert "`auto-linear` 60.0: +4.0 [+2.0, +6.0] x vs pooled-linear, 3 seeds" in table


def test_each_cell_gives_its_peak_memory(tmp_path):
    """The most resident memory of any of a column's cells, ≤ where the largest is a study process's peak so far."""
    own = {"peak_rss_gb": [2.0, 2.5, 2.1], "peak_rss_scope": ["cell"] * 3}
    study = _study(
        tmp_path / "s.json",
        [
            {**_row("n1000", "pooled", 57.0), "peak_rss_gb": [3.0, 2.0, 2.0]},  # kept before peaks were per cell
            {**_row("n1000", "dhrd", 58.0, 1.0), **own},
        ],
    )
    out = tmp_path / "t"
    subprocess.run([sys.executable, str(SCRIPT), f"T={study}", "--out", str(out)], check=True, capture_output=True)
    table = out.with_suffix(".md").read_text()
    assert "57.0 (3 seeds, ≤3.0 GB) |" in table and "1.50x time, 2.5 GB" in table


def test_a_time_ratio_over_some_seeds_says_which(tmp_path):
    """A seed whose time is unknown (resumed from a checkpoint that kept no clock) is left out of the ratio, and the
    cell says so rather than passing the ratio off as every seed's."""
    study = _study(
        tmp_path / "s.json",
        [
            _row("n1000", "pooled", 57.0),
            {**_row("n1000", "dhrd", 58.0, 1.0), "time_seeds": [1, 3], "untimed_seeds": [2]},
        ],
    )
    out = tmp_path / "t"
    subprocess.run([sys.executable, str(SCRIPT), f"T={study}", "--out", str(out)], check=True, capture_output=True)
    table = out.with_suffix(".md").read_text()
    assert "1.50x time (seeds 1,3 only: seed 2's time is unknown)" in table


def test_the_default_heads_evidence_is_each_methods_linear_minus_mlp_paired_by_seed(tmp_path):
    """The table's second part: per task, pooled-linear and dhrd-linear against their MLP twins (the studies'
    ``vs_mlp``), the seeds each pairs, and the linear head's wins and losses over every paired seed of the table."""

    def linear(budget: str, variant: str, per_seed: list[float], seeds: list[int] | None = None) -> dict:
        row = _row(budget, variant, 60.0, None if variant.startswith("pooled") else 1.0)
        difference = sum(per_seed) / len(per_seed)
        row["vs_mlp"] = {"difference": difference, "ci": [difference - 3, difference + 3], "verdict": "x"}
        row["vs_mlp"] |= {"per_seed": per_seed, "seeds": len(per_seed)}
        row["seeds"] = [1, 2, 3]
        if seeds:
            row["vs_mlp"]["paired_seeds"] = seeds
        return row

    first = _study(
        tmp_path / "a.json",
        [
            _row("n1", "pooled", 61.0),
            linear("n1", "pooled-linear", [-1.0, 0.0, -2.0]),
            linear("n1", "dhrd-linear", [3.0, 1.0, -1.0]),
        ],
    )
    second = _study(
        tmp_path / "b.json", [_row("n2", "pooled", 61.0), linear("n2", "pooled-linear", [1.0, -3.0], [1, 2])]
    )
    out = tmp_path / "table"
    subprocess.run([sys.executable, str(SCRIPT), f"A={first}", f"B={second}", "--out", str(out)], check=True)
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert rows[0]["head_pooled"]["paired_seeds"] == [1, 2, 3] and rows[1]["head_pooled"]["paired_seeds"] == [1, 2]
    assert rows[0]["head_dhrd"]["per_seed"] == [3.0, 1.0, -1.0] and rows[1]["head_dhrd"] is None
    table = out.with_suffix(".md").read_text()
    assert "| B | n2 | -1.0 [-4.0, +2.0] x, seeds 1,2 (prelim) |  |" in table
    assert "+1.0 [-2.0, +4.0] x, seeds 1,2,3 |" in table  # a study that did not name its seeds: the row's
    assert "pooled: the linear head ahead on 1 of 5 paired seeds, behind on 3, level on 1" in table
    assert "dhrd: the linear head ahead on 2 of 3 paired seeds, behind on 1, level on 0" in table


def test_a_table_without_linear_heads_has_no_head_section(tmp_path):
    study = _study(tmp_path / "s.json", [_row("n1", "pooled", 57.0), _row("n1", "dhrd", 58.0, 1.0)])
    out = tmp_path / "t"
    subprocess.run([sys.executable, str(SCRIPT), f"T={study}", "--out", str(out)], check=True, capture_output=True)
    assert "The default head" not in out.with_suffix(".md").read_text()
