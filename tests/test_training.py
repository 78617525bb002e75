import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dhrd import DHRDTrainingArguments, evaluate, load_classifier, predict, train
from dhrd.training import lora_target_pattern


def tiny_args(tmp_path, tiny_backbone, superglue_dir, **overrides):
    defaults = dict(
        output_dir=str(tmp_path / "run"),
        task="cb",
        data_dir=str(superglue_dir),
        backbone=str(tiny_backbone),
        num_train_epochs=2,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        bf16=False,
        max_length=128,
    )
    defaults.update(overrides)
    return DHRDTrainingArguments(**defaults)


def test_train_lora_saves_best_model_and_metrics(tmp_path, tiny_backbone, superglue_dir):
    result = train(tiny_args(tmp_path, tiny_backbone, superglue_dir))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["tasks"]["cb"]) >= {"f1", "accuracy", "score", "examples"}
    assert metrics["tasks"]["cb"]["examples"] == 6 and metrics["train_rows"] == 36
    assert [e["epoch"] for e in metrics["epochs"]] == [1.0, 2.0]
    assert metrics["best_checkpoint"] is not None
    assert result.model_dir == tmp_path / "run" / "model"
    # the saved classifier is LoRA-merged: a plain model with no adapter files
    assert not list(result.model_dir.glob("adapter_*"))
    model, _ = load_classifier(tmp_path / "run")
    assert model.config.dhrd["data"]["tasks"] == ["cb"]
    # evaluating the saved model reproduces the metrics train() reported
    again = evaluate(tmp_path / "run", output=tmp_path / "eval.json", bf16=False)
    assert again["tasks"]["cb"] == metrics["tasks"]["cb"]
    assert json.loads((tmp_path / "eval.json").read_text())["score"] == again["score"]


def test_lora_targets_every_projection_and_not_the_head(tiny_backbone):
    from dhrd.modeling import build_classifier

    classifier, _, _ = build_classifier(str(tiny_backbone), ["No", "Yes"])
    assert (
        lora_target_pattern(classifier.model) == r"model\..*\.(down_proj|gate_proj|k_proj|o_proj|q_proj|up_proj|v_proj)"
    )


def test_full_finetuning_learns_a_separable_user_task(tmp_path, tiny_backbone):
    words = {"pos": ["good", "great"], "neg": ["bad", "awful"]}
    rows = [
        {"review": f"the {w} movie {i}", "stars": label}
        for i in range(12)
        for label in ("pos", "neg")
        for w in words[label][i % 2 : i % 2 + 1]
    ]
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows[:8]).to_json(tmp_path / "val.jsonl", orient="records", lines=True)
    args = DHRDTrainingArguments(
        output_dir=str(tmp_path / "run"),
        train_file=str(tmp_path / "train.csv"),
        validation_file=str(tmp_path / "val.jsonl"),
        text_column="review",
        label_column="stars",
        backbone=str(tiny_backbone),
        lora=False,
        head="linear",
        learning_rate=3e-3,
        num_train_epochs=6,
        per_device_train_batch_size=8,
        bf16=False,
        warmup_steps=0,
        task=None,
    )
    result = train(args)
    assert result.metrics["tasks"]["custom"]["accuracy"] == 100.0
    out = predict(tmp_path / "run", tmp_path / "preds.jsonl", file=str(tmp_path / "val.jsonl"), bf16=False)
    lines = [json.loads(x) for x in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert len(lines) == 8 == out.rows
    assert set(lines[0]["probabilities"]) == {"neg", "pos"}
    assert all(x["prediction"] == x["label"] for x in lines)
    assert abs(sum(lines[0]["probabilities"].values()) - 1) < 1e-4


def test_joint_model_is_evaluated_per_task(tmp_path, tiny_backbone, superglue_dir):
    result = train(tiny_args(tmp_path, tiny_backbone, superglue_dir, task="cb,copa,rte", num_train_epochs=1))
    assert set(result.metrics["tasks"]) == {"cb", "copa", "rte"}
    scores = [m["score"] for m in result.metrics["tasks"].values()]
    assert result.metrics["score"] == pytest.approx(sum(scores) / 3, abs=1e-3)


CLI = [sys.executable, "-m", "dhrd"]


def _train_command(out: Path, tiny_backbone, superglue_dir):
    return [
        *CLI,
        "train",
        "--task",
        "cb",
        "--data-dir",
        str(superglue_dir),
        "--backbone",
        str(tiny_backbone),
        "--output-dir",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "2",
        "--save-steps",
        "2",
        "--lr",
        "1e-3",
        "--no-bf16",
        "--max-length",
        "128",
    ]


@pytest.fixture(scope="module")
def unbroken_run(tmp_path_factory, tiny_backbone, superglue_dir):
    out = tmp_path_factory.mktemp("unbroken") / "run"
    subprocess.run(_train_command(out, tiny_backbone, superglue_dir), check=True, capture_output=True, timeout=600)
    return out


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_kill_and_resume_matches_an_unbroken_run(tmp_path, tiny_backbone, superglue_dir, unbroken_run, delay):
    """SIGKILL at several moments after the first checkpoint (some land mid-way through writing the next
    one); the rerun resumes and ends with the same model and metrics as a run never killed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _train_command(killed, tiny_backbone, superglue_dir),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list((killed / "checkpoints").glob("checkpoint-2*/trainer_state.json")):
        time.sleep(0.01)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"

    resumed = subprocess.run(
        _train_command(killed, tiny_backbone, superglue_dir), env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr
    a = load_file(str(unbroken_run / "model" / "model.safetensors"))
    b = load_file(str(killed / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (unbroken_run, killed))
    assert m1["tasks"] == m2["tasks"]
    assert m2["resumed_from"] is not None


def test_a_checkpoint_cut_short_is_not_resumed_from(tmp_path):
    from dhrd.training import latest_complete_checkpoint

    for step, state in [(2, "{}"), (4, "{}"), (6, '{"global_st')]:
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-8").mkdir()  # killed before its state was written
    assert latest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4"]


def test_resuming_with_other_settings_is_refused(tmp_path, tiny_backbone, superglue_dir):
    from dhrd.errors import DHRDInputError

    train(tiny_args(tmp_path, tiny_backbone, superglue_dir, num_train_epochs=1))
    with pytest.raises(DHRDInputError, match=r"holds a run with other settings \(task\)"):
        train(tiny_args(tmp_path, tiny_backbone, superglue_dir, task="copa", num_train_epochs=1))
    restarted = train(tiny_args(tmp_path, tiny_backbone, superglue_dir, task="copa", num_train_epochs=1, resume=False))
    assert set(restarted.metrics["tasks"]) == {"copa"} and restarted.metrics["resumed_from"] is None


def test_step_checkpoints_leave_an_epoch_end_to_the_epoch_save():
    """A step save on an epoch's last step was overwritten by the epoch-end save (after validation); a kill
    between the two left a checkpoint without that epoch's validation, and the resumed run could keep another
    best epoch than an unbroken run. Step saves now skip epoch ends."""
    from transformers import TrainerControl, TrainerState

    from dhrd.training import SaveEveryNSteps

    callback = SaveEveryNSteps(2)
    for step, epoch, expected in [(2, 2 / 18, True), (3, 3 / 18, False), (18, 1.0, False), (20, 1 + 2 / 18, True)]:
        control = callback.on_step_end(None, TrainerState(global_step=step, epoch=epoch), TrainerControl())
        assert control.should_save is expected, (step, epoch)


def test_one_epoch_skips_the_redundant_validation_pass(tmp_path, tiny_backbone, superglue_dir):
    """With one epoch there is no best epoch to pick: the model is scored once, as it is saved."""
    result = train(tiny_args(tmp_path, tiny_backbone, superglue_dir, num_train_epochs=1))
    assert result.metrics["epochs"] == [] and result.metrics["eval_seconds"] == 0
    assert result.metrics["tasks"]["cb"]["examples"] == 6 and 0 <= result.metrics["score"] <= 100
    scored = evaluate(result.model_dir, split="validation", data_dir=str(superglue_dir), bf16=False)
    assert scored["score"] == result.metrics["score"]


def _epoch_rows(run) -> tuple[list, int, int]:
    """(real token ids, label) of every row one epoch of the trainer's batches holds, and real/padded tokens."""
    rows, real, padded = [], 0, 0
    for batch in run.trainer.get_train_dataloader():
        mask = batch["attention_mask"]
        real, padded = real + int(mask.sum()), padded + mask.numel()
        for ids, row_mask, label in zip(batch["input_ids"], mask, batch["labels"]):
            rows.append((tuple(ids[row_mask.bool()].tolist()), int(label)))
    return rows, real, padded


@pytest.mark.parametrize("method", ["pooled", "dhrd"])
def test_length_grouped_batches_hold_every_candidate_row_once_with_its_label(
    tmp_path, tiny_backbone, superglue_dir, method
):
    from dhrd.training import prepare_run

    def epoch(grouped: bool):
        args = tiny_args(
            tmp_path,
            tiny_backbone,
            superglue_dir,
            method=method,
            group_by_length=grouped,
            rationales=str(_cb_rationales(tmp_path)) if method == "dhrd" else None,
        )
        return prepare_run(args, save_strategy="no", eval_strategy="no", load_best_model_at_end=False)

    grouped, plain = epoch(True), epoch(False)
    assert type(grouped.trainer._get_train_sampler()).__name__ == "LengthGroupedSampler"
    rows, real, padded = _epoch_rows(grouped)
    expected = sorted((tuple(f["input_ids"]), f["labels"]) for f in grouped.trainer.train_dataset)
    assert sorted(rows) == expected and len(rows) == 36  # 12 CB examples x 3 relation rows, each once
    _, plain_real, plain_padded = _epoch_rows(plain)
    assert real == plain_real and padded <= plain_padded


def _cb_rationales(tmp_path):
    from conftest import write_jsonl

    path = tmp_path / "rationales.jsonl"
    if not path.is_file():
        write_jsonl(path, [{"idx": i, "rationale": "Ann said so, " + "and so on " * (i % 4)} for i in range(12)])
    return path
