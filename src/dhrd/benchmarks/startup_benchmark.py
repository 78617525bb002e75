"""How fast the command line answers what needs no model: ``dhrd --help``, a command's ``--help``, ``dhrd --version``
and option errors, each in a fresh interpreter as a user runs it, timed from start to exit, with the heavy
libraries (torch, transformers) each one loaded. ``dhrd benchmark`` reports these rows beside its own; a test
checks that none of these commands loads a heavy library (timings are reported, never asserted)."""

from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "transformers")
COMMANDS = (
    ("--help",),
    ("--version",),
    ("evaluate", "--help"),
    ("train", "--help"),
    ("evaluate",),  # a missing option
    ("evaluate", "--model", "m", "--batch-size", "x"),  # a bad value
    ("train", "--lr", "abc"),  # a bad value of a train option (DHRDTrainingArguments')
    ("train", "--no-such-option"),
)
# dhrd's entry point, as the installed ``dhrd`` script calls it, then the heavy modules loaded by its exit
PROBE = """import atexit, json, pathlib, sys
report, heavy = pathlib.Path(sys.argv[1]), sys.argv[2].split(",")
sys.argv = ["dhrd", *sys.argv[3:]]
atexit.register(lambda: report.write_text(json.dumps([m for m in heavy if m in sys.modules])))
from dhrd.cli import main
main()
"""


def run_cli(args: tuple[str, ...] | list[str], env: dict | None = None, timeout: float = 300) -> dict:
    """``dhrd ARGS`` in a fresh interpreter: its exit code, output, wall seconds and the heavy modules it loaded."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "loaded.json"
        command = [sys.executable, "-c", PROBE, str(report), ",".join(HEAVY), *args]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        seconds = time.perf_counter() - start
        loaded = json.loads(report.read_text()) if report.is_file() else None  # None: it never reached its exit
    return {
        "command": shlex.join(["dhrd", *args]),
        "exit_code": done.returncode,
        "seconds": seconds,
        "loaded": loaded,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


def import_seconds(module: str = "dhrd.cli") -> float | None:
    """``module``'s cumulative import time as ``python -X importtime`` reports it."""
    command = [sys.executable, "-X", "importtime", "-c", f"import {module}"]
    done = subprocess.run(command, capture_output=True, text=True)
    found = re.search(rf"^import time:\s+\d+ \|\s+(\d+) \| {re.escape(module)}$", done.stderr, re.MULTILINE)
    return int(found.group(1)) / 1e6 if found else None


def cli_startup(repeats: int = 3) -> dict:
    """Each of ``COMMANDS`` run ``repeats`` times: best and median wall seconds, exit code, heavy modules loaded;
    and the import time of ``dhrd.cli``."""
    rows = []
    env = {**os.environ, "COLUMNS": "120"}
    for args in COMMANDS:
        runs = [run_cli(args, env) for _ in range(max(repeats, 1))]
        times = [run["seconds"] for run in runs]
        loaded = sorted({m for run in runs for m in (["(no report)"] if run["loaded"] is None else run["loaded"])})
        rows.append(
            {
                "command": runs[0]["command"],
                "exit_code": runs[0]["exit_code"],
                "seconds_min": round(min(times), 3),
                "seconds_median": round(statistics.median(times), 3),
                "heavy_modules_loaded": loaded,
            }
        )
    return {"rows": rows, "import_dhrd_cli_seconds": import_seconds(), "repeats": repeats}


STARTUP_COLUMNS = ("command", "exit code", "seconds (best)", "seconds (median)", "torch/transformers loaded")


def startup_rows(startup: dict) -> list[list[str]]:
    return [
        [
            r["command"],
            str(r["exit_code"]),
            f"{r['seconds_min']:.2f}",
            f"{r['seconds_median']:.2f}",
            ", ".join(r["heavy_modules_loaded"]) or "neither",
        ]
        for r in startup.get("rows", [])
    ]


def startup_markdown(startup: dict) -> list[str]:
    """The start-up table's markdown lines (none where the result has no start-up rows)."""
    if not startup.get("rows"):
        return []
    seconds = startup.get("import_dhrd_cli_seconds")
    lines = ["", "| " + " | ".join(STARTUP_COLUMNS) + " |", "|" + "---|" * len(STARTUP_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in startup_rows(startup)]
    if seconds is not None:
        lines.append(f"\n`import dhrd.cli`: {seconds:.3f} s (`python -X importtime`).")
    return lines


__all__ = ["COMMANDS", "HEAVY", "cli_startup", "import_seconds", "run_cli", "startup_markdown", "startup_rows"]
