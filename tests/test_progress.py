"""What a run shows: Trainer's logs as short lines, no FutureWarning of our own making, a message while a GGUF
converts, and a line per reproduce cell."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from dhrd.progress import log_line


def test_log_lines_for_training_validation_and_summary():
    train = {"loss": 0.69314, "grad_norm": 0.40071, "learning_rate": 0.000157, "epoch": 1.11}
    assert log_line(train, 10, 18) == "step 10/18 · epoch 1.11: loss 0.6931, grad-norm 0.4007, lr 1.57e-04"
    validation = {
        "eval_score": 62.5,
        "eval_loss": 0.6917,
        "eval_cb/accuracy": 66.07,
        "eval_cb/score": 62.5,  # the run's score again, for one task
        "eval_cb/examples": 56,
        "eval_runtime": 3.4,
        "eval_samples_per_second": 16.5,
        "epoch": 2.0,
    }
    assert log_line(validation, 18, 18) == (
        "validation at step 18/18 · epoch 2.00 (3 s): score 62.5, loss 0.6917, cb/accuracy 66.07"
    )
    summary = {"train_runtime": 81.4, "train_loss": 0.6932, "train_samples_per_second": 3.0, "epoch": 2.0}
    assert log_line(summary, 18, 18) == "trained 18 steps in 81 s, mean loss 0.6932"


def test_cli_train_prints_lines_not_dicts_or_future_warnings(tiny_backbone, superglue_dir, tmp_path):
    command = [sys.executable, "-m", "dhrd", "train", "--task", "cb", "--data-dir", str(superglue_dir)]
    command += ["--backbone", str(tiny_backbone), "--output-dir", str(tmp_path / "run"), "--epochs", "2"]
    command += ["--batch-size", "4", "--no-bf16", "--max-length", "128"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    output = (done.stdout + done.stderr).replace("\r", "\n")
    assert "validation at step" in output and "· epoch 1.00" in output and "· epoch 2.00" in output
    assert "trained " in output and " steps in " in output
    assert "{'" not in output  # Trainer's dict logs
    assert "FutureWarning" not in output
    assert "Writing model shards" not in output  # transformers' own bars between the phases'


@pytest.mark.slow
def test_gguf_conversion_says_what_it_does(tmp_path, monkeypatch, caplog):
    from conftest import SHARED_GGUF

    if not SHARED_GGUF.is_file():
        pytest.skip(f"shared SmolLM2 GGUF not found at {SHARED_GGUF} (../shared is absent)")
    pytest.importorskip("gguf", reason="loading a GGUF needs the gguf package")
    from dhrd.modeling import gguf_to_hf

    monkeypatch.setenv("DHRD_CACHE", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="dhrd"):
        target = gguf_to_hf(str(SHARED_GGUF.parent), SHARED_GGUF.name)
    messages = [r.getMessage() for r in caplog.records if r.name == "dhrd.modeling"]
    assert messages[0].startswith(f"converting {SHARED_GGUF.name} to a transformers checkpoint, once")
    assert messages[1].startswith("converted in ") and str(target) in messages[1]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dhrd"):
        assert gguf_to_hf(str(SHARED_GGUF.parent), SHARED_GGUF.name) == target  # converted: nothing to say
    assert not [r for r in caplog.records if r.name == "dhrd.modeling"]
