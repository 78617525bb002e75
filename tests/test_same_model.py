"""scripts/same_model.py: two cells are the same model only when every scored probability is equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "scripts" / "same_model.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_a_run_and_a_kept_cell_compare_row_by_row(tmp_path):
    ids = ["r0", "r1", "r2"]
    run = tmp_path / "runs" / "n3-e1-lr0.001-auto-linear-s1"
    run.mkdir(parents=True)
    (run / "scored.json").write_text(json.dumps({"ids": ids, "probs": [[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]]}))
    kept = tmp_path / "study.cells.json"
    kept.write_text(json.dumps({
        "same": {"ids": ids, "probs": [[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]]},
        "other": {"ids": ids, "probs": [[0.9, 0.1], [0.7, 0.3], [0.5, 0.5]]},
        "elsewhere": {"ids": ["r0", "r1", "r9"], "probs": [[1, 0]] * 3},
    }))  # fmt: skip

    done = _run(str(run), f"{kept}:same", "--out", str(tmp_path / "same.json"))
    assert done.returncode == 0 and "(the same model)" in done.stdout
    assert json.loads((tmp_path / "same.json").read_text())["same_model"] is True

    done = _run(str(run), f"{kept}:other", "--out", str(tmp_path / "other.json"))
    found = json.loads((tmp_path / "other.json").read_text())
    assert (found["max_probability_difference"], found["predictions_that_differ"]) == (0.3, 1)
    assert found["same_model"] is False and "predictions that differ: 1 (not the same model)" in done.stdout

    for args, says in [
        ((str(run), f"{kept}:elsewhere"), "scored different rows"),
        ((str(run), f"{kept}:missing"), "keeps no cell missing"),
        ((str(tmp_path / "nowhere"), f"{kept}:same"), "neither a run directory"),
    ]:
        refused = _run(*args)
        assert refused.returncode == 2 and says in refused.stderr and "Traceback" not in refused.stderr
