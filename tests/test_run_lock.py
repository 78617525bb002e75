"""One process trains in a run directory at a time: a second is refused in one line, a killed holder leaves no
stale lock, the same process may enter again (``--alpha auto``'s final training). (A study leaving a held cell:
test_variants_study.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import LOCK_HOLDER

from dhrd.training.run_lock import LOCK_FILE, RunInUse, run_lock

LOCK_BRIEFLY = LOCK_HOLDER.replace("600", "0")  # takes the lock, says so and lets it go


def test_a_second_process_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path, lock_holder):
    with pytest.raises(RunInUse, match=f"{tmp_path / 'run'}: another process is training in this run directory"):
        with run_lock(tmp_path / "run"):
            pass
    lock_holder.send_signal(signal.SIGKILL)  # kill -9: no clean-up runs, the kernel drops the flock
    lock_holder.wait()
    with run_lock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_FILE).is_file()


def test_the_same_process_enters_again_and_releases_on_the_last_exit(tmp_path):
    run = tmp_path / "mine"
    with run_lock(run):
        with run_lock(run):  # the alpha search's final training: train() inside train(), one directory
            pass
        probe = subprocess.run([sys.executable, "-c", LOCK_BRIEFLY, str(run)], capture_output=True)
        assert probe.returncode != 0 and b"RunInUse" in probe.stderr  # still held after the inner exit
    done = subprocess.run([sys.executable, "-c", LOCK_BRIEFLY, str(run)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "held"


def test_a_launched_process_beside_the_main_one_does_not_take_the_lock(tmp_path, lock_holder, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # accelerate launch: rank 0 holds it for the run
    with run_lock(tmp_path / "run"):
        pass


def test_dhrd_train_in_a_directory_in_use_is_one_line_and_exit_code_2(tmp_path, lock_holder):
    done = subprocess.run(  # refused before any data or model loads, at once (no wait on the lock): well within 300 s
        [sys.executable, "-m", "dhrd", "train", "--task", "cb", "--output-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DHRD_TRACEBACK": "0"},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert "another process is training in this run directory" in lines[-1] and "Traceback" not in done.stderr
