"""One process trains in a run directory at a time: a second is refused in one line, a killed holder leaves no
stale lock, the same process may enter again (``--alpha auto``'s final training), and a study skips a held cell."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dhrd.training.run_lock import LOCK_FILE, RunInUse, run_lock

HOLD = """
import sys, time
from dhrd.training.run_lock import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def _study_script():
    """scripts/variants_study.py as a module (its dataclasses look their module up by name)."""
    if "variants_study" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "variants_study", Path(__file__).parents[1] / "scripts" / "variants_study.py"
        )
        sys.modules["variants_study"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["variants_study"])
    return sys.modules["variants_study"]


@pytest.fixture
def holder(tmp_path):
    """Another process holding ``tmp_path / 'run'``'s lock until the test kills it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_a_second_process_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path, holder):
    with pytest.raises(RunInUse, match=f"{tmp_path / 'run'}: another process is training in this run directory"):
        with run_lock(tmp_path / "run"):
            pass
    holder.send_signal(signal.SIGKILL)  # kill -9: no clean-up runs, the kernel drops the flock
    holder.wait()
    with run_lock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_FILE).is_file()


def test_the_same_process_enters_again_and_releases_on_the_last_exit(tmp_path, holder):
    run = tmp_path / "mine"
    with run_lock(run):
        with run_lock(run):  # the alpha search's final training: train() inside train(), one directory
            pass
        probe = subprocess.run([sys.executable, "-c", HOLD.replace("600", "0"), str(run)], capture_output=True)
        assert probe.returncode != 0 and b"RunInUse" in probe.stderr  # still held after the inner exit
    done = subprocess.run([sys.executable, "-c", HOLD.replace("600", "0"), str(run)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "held"


def test_a_launched_process_beside_the_main_one_does_not_take_the_lock(tmp_path, holder, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # accelerate launch: rank 0 holds it for the run
    with run_lock(tmp_path / "run"):
        pass


def test_dhrd_train_in_a_directory_in_use_is_one_line_and_exit_code_2(tmp_path, holder):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dhrd", "train", "--task", "cb", "--output-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DHRD_TRACEBACK": "0"},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert "another process is training in this run directory" in lines[-1] and "Traceback" not in done.stderr
    assert time.monotonic() - started < 300  # refused before any data or model loads (no wait on the lock)


def test_a_study_leaves_a_cell_that_another_process_trains(tmp_path, holder):
    """Two queues with the same cells: the one without the lock neither trains nor scores it, and says so."""
    study = _study_script()
    trained = []
    assert study.finish_cell(None, tmp_path / "run", lambda: trained.append(1)) is False
    assert trained == [] and not (tmp_path / "run" / "scored.json").exists()


def test_a_study_trains_and_scores_a_free_cell_once(tmp_path):
    from types import SimpleNamespace

    study = _study_script()
    fake = SimpleNamespace(scored_probs=lambda run: [[0.9, 0.1]], examples=[SimpleNamespace(id="r0")])
    trained = []

    def train_run():
        trained.append(1)
        (tmp_path / "run" / "metrics.json").write_text("{}")

    assert study.finish_cell(fake, tmp_path / "run", train_run) is True
    assert study.finish_cell(fake, tmp_path / "run", train_run) is True  # finished: scored again from its file
    assert trained == [1] and (tmp_path / "run" / "scored.json").is_file()
