import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_provenance
from safetensors.torch import load_file

from dhrd import DHRDTrainingArguments, evaluate, load_classifier, predict, train
from dhrd.training.model_setup import lora_target_pattern


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
    assert_provenance(metrics["provenance"])
    assert_provenance(json.loads((tmp_path / "eval.json").read_text())["provenance"])


def test_lora_targets_every_projection_and_not_the_head(tiny_backbone):
    from dhrd.modeling import build_classifier

    classifier, _, _ = build_classifier(str(tiny_backbone), ["No", "Yes"])
    assert (
        lora_target_pattern(classifier.model) == r"model\..*\.(down_proj|gate_proj|k_proj|o_proj|q_proj|up_proj|v_proj)"
    )


def _review_rows() -> list[dict]:
    """24 reviews a word decides: "good"/"great" are pos, "bad"/"awful" neg."""
    words = {"pos": ["good", "great"], "neg": ["bad", "awful"]}
    return [
        {"review": f"the {w} movie {i}", "stars": label}
        for i in range(12)
        for label in ("pos", "neg")
        for w in words[label][i % 2 : i % 2 + 1]
    ]


def test_full_finetuning_learns_a_separable_user_task(tmp_path, tiny_backbone):
    rows = _review_rows()
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


def _train_command(out: Path, tiny_backbone, superglue_dir, *extra: str):
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
        *extra,
    ]


@pytest.fixture(scope="module")
def unbroken_run(tmp_path_factory, tiny_backbone, superglue_dir):
    """The run never killed, per set of extra flags, trained once for all its kill points."""
    runs = {}

    def run(extra: tuple[str, ...]) -> Path:
        if extra not in runs:
            out = tmp_path_factory.mktemp("unbroken") / "run"
            command = _train_command(out, tiny_backbone, superglue_dir, *extra)
            subprocess.run(command, check=True, capture_output=True, timeout=600)
            runs[extra] = out
        return runs[extra]

    return run


# CB's 12 training examples are 36 yes/no rows: 18 steps an epoch at batch 2, a step checkpoint every 2 steps.
# With the best epoch kept, a kill after it changes nothing saved; --last-epoch keeps every step's effect.
@pytest.mark.parametrize(
    "extra, kill_when",
    [
        ((), "checkpoint-2/trainer_state.json"),  # first epoch
        # a later epoch: transformers' length-grouped order came from the global RNG, which a resumed run could
        # not replay (CI failed on it about once in six runs, before dhrd.training.sampling seeded the order per epoch)
        ((), "checkpoint-22/trainer_state.json"),
        # third epoch, most often while that checkpoint is being written; slow (the default suite's CI budget):
        # random-batches-last-epoch below resumes a --last-epoch run inside a later epoch too
        pytest.param(("--last-epoch",), "checkpoint-40", marks=pytest.mark.slow),
        (("--last-epoch", "--random-batches"), "checkpoint-22/trainer_state.json"),
    ],
    ids=["first-epoch", "second-epoch", "third-epoch-last-epoch", "random-batches-last-epoch"],
)
def test_kill_and_resume_matches_an_unbroken_run(
    tmp_path, tiny_backbone, superglue_dir, unbroken_run, extra, kill_when
):
    """SIGKILL at a checkpoint of each epoch (one lands mid-way through writing it); the rerun resumes and ends
    with the same model and metrics as a run never killed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    command = _train_command(killed, tiny_backbone, superglue_dir, *extra)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not (killed / "checkpoints" / kill_when).exists():
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it could be killed"

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr
    unbroken = unbroken_run(extra)
    a = load_file(str(unbroken / "model" / "model.safetensors"))
    b = load_file(str(killed / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        largest = (a[key] - b[key]).abs().max().item()
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=f"{key}: differs by up to {largest:.3g}")
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (unbroken, killed))
    assert m1["tasks"] == m2["tasks"]
    assert m2["resumed_from"] is not None


def test_a_resumed_runs_time_and_peak_count_the_processes_before_it(tmp_path, tiny_backbone, superglue_dir):
    """Each checkpoint keeps the run's training seconds and peak memory so far; a run resumed from it (another
    process, after a kill) adds those seconds to its own and reports the larger peak, so a long run killed and
    resumed does not under-report its time or its memory."""
    settings = dict(
        output_dir=str(tmp_path / "run"), task="cb", data_dir=str(superglue_dir), backbone=str(tiny_backbone),
        num_train_epochs=2, per_device_train_batch_size=8, bf16=False, max_length=128, max_train_examples=8,
    )  # fmt: skip
    first = train(DHRDTrainingArguments(**settings)).metrics
    assert first["train_seconds_before_resume"] is None and first["memory"]["peak_rss_before_resume"] is None
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    shutil.rmtree(checkpoints[-1])  # as if killed before the last epoch's checkpoint
    (tmp_path / "run" / "metrics.json").unlink()
    state_file = checkpoints[0] / "trainer_state.json"
    state = json.loads(state_file.read_text())
    kept = state["stateful_callbacks"]
    # the first process's, to that checkpoint
    assert 0 < kept["MemoryCallback"]["attributes"]["peak_rss"] <= first["memory"]["peak_rss"]
    assert 0 < kept["RunClock"]["attributes"]["seconds"] < first["train_seconds"]
    # as if the process that wrote it had trained for 1,000 s and peaked at 99 GB
    kept["MemoryCallback"]["attributes"]["peak_rss"], kept["RunClock"]["attributes"]["seconds"] = 99.0, 1000.0
    state_file.write_text(json.dumps(state))
    again = train(DHRDTrainingArguments(**settings)).metrics
    assert again["resumed_from"] == str(checkpoints[0])
    assert again["memory"]["peak_rss_before_resume"] == 99.0 and again["memory"]["peak_rss"] == 99.0
    assert again["train_seconds_before_resume"] == 1000.0 and again["train_seconds"] > 1000
    # two epochs: the first's time in the 1,000 s, the second's in this process's
    assert again["optimizer_seconds_per_epoch"] > 1000 / 2


def test_a_run_resumes_from_a_checkpoint_that_kept_none_of_its_callbacks(tmp_path, tiny_backbone, superglue_dir):
    """A checkpoint written before dhrd kept its clock and memory callbacks in the trainer state (an upgrade
    between the kill and the resume) lacks their entries; Trainer's next save indexed them and the resumed run
    died with a KeyError at its first checkpoint. It now trains on, saves them, and says the earlier processes'
    time and peak were not kept."""
    settings = dict(
        output_dir=str(tmp_path / "run"), task="cb", data_dir=str(superglue_dir), backbone=str(tiny_backbone),
        num_train_epochs=2, per_device_train_batch_size=8, bf16=False, max_length=128, max_train_examples=8,
    )  # fmt: skip
    train(DHRDTrainingArguments(**settings))
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    shutil.rmtree(checkpoints[-1])  # killed before the last epoch's checkpoint
    (tmp_path / "run" / "metrics.json").unlink()
    state_file = checkpoints[0] / "trainer_state.json"
    state = json.loads(state_file.read_text())
    for name in ("MemoryCallback", "RunClock"):  # as the dhrd that wrote it kept them: not at all
        del state["stateful_callbacks"][name]
    state_file.write_text(json.dumps(state))

    again = train(DHRDTrainingArguments(**settings)).metrics  # saves the second epoch's checkpoint
    assert again["resumed_from"] == str(checkpoints[0])
    assert again["train_seconds_before_resume"] is None and again["memory"]["peak_rss_before_resume"] is None
    last = max((tmp_path / "run" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    kept = json.loads((last / "trainer_state.json").read_text())["stateful_callbacks"]
    assert kept["RunClock"]["attributes"]["seconds"] > 0 and kept["MemoryCallback"]["attributes"]["peak_rss"] > 0


def test_a_checkpoint_cut_short_is_not_resumed_from(tmp_path):
    from dhrd.training.resume import latest_complete_checkpoint

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

    from dhrd.training.callbacks import SaveEveryNSteps

    callback = SaveEveryNSteps(2)
    for step, epoch, expected in [(2, 2 / 18, True), (3, 3 / 18, False), (18, 1.0, False), (20, 1 + 2 / 18, True)]:
        control = callback.on_step_end(None, TrainerState(global_step=step, epoch=epoch), TrainerControl())
        assert control.should_save is expected, (step, epoch)


def _records(data_dir, folder: str) -> dict:
    rows = [json.loads(line) for line in (Path(data_dir) / folder / "val.jsonl").read_text().splitlines()]
    return {r["idx"]: r for r in rows}


def official_scores(task: str, data_dir, run_dir: Path, input_format: str) -> dict:
    """A run's validation metrics recomputed with sklearn from its saved per-row probabilities and the raw jsonl
    labels, independently of dhrd.data.tasks: the official metrics in percent and the task score."""
    from sklearn.metrics import accuracy_score, f1_score

    saved = json.loads((run_dir / "validation-predictions.json").read_text())
    probs = dict(zip(saved["ids"], np.asarray(saved["probs"])))
    if task == "multirc":
        gold, said, questions = [], [], {}
        for passage in _records(data_dir, "MultiRC").values():
            for question in passage["passage"]["questions"]:
                for answer in question["answers"]:
                    key = f"multirc-{passage['idx']}-{question['idx']}-{answer['idx']}"
                    gold.append(answer["label"])
                    said.append(int(probs[key].argmax()))
                    questions.setdefault((passage["idx"], question["idx"]), []).append(gold[-1] == said[-1])
        metrics = {"f1a": 100 * f1_score(gold, said), "em": 100 * np.mean([all(q) for q in questions.values()])}
    else:
        records = _records(data_dir, {"cb": "CB", "copa": "COPA", "rte": "RTE"}[task])
        if task == "cb":
            names = ["entailment", "contradiction", "neutral"]
            gold = [r["label"] for r in records.values()]
            if input_format == "native":
                said = [names[int(probs[f"cb-{i}"].argmax())] for i in records]
            else:  # the relation whose row has the highest P(Yes)
                said = [max(names, key=lambda n, i=i: probs[f"cb-{i}#{n}"][1]) for i in records]
            metrics = {"f1": 100 * f1_score(gold, said, labels=names, average="macro"), "accuracy": 0.0}
            metrics["accuracy"] = 100 * accuracy_score(gold, said)
        elif task == "copa" and input_format == "native":
            said = [int(probs[f"copa-{i}"].argmax()) for i in records]
            metrics = {"accuracy": 100 * accuracy_score([r["label"] for r in records.values()], said)}
        else:
            raise NotImplementedError(task)
    metrics["score"] = float(np.mean(list(metrics.values())))
    return metrics


def test_one_epoch_skips_the_redundant_validation_pass(tmp_path, tiny_backbone, superglue_dir):
    """With one epoch there is no best epoch to pick: the model is scored once, as it is saved."""
    result = train(tiny_args(tmp_path, tiny_backbone, superglue_dir, num_train_epochs=1))
    assert result.metrics["epochs"] == [] and result.metrics["eval_seconds"] == 0
    assert result.metrics["tasks"]["cb"]["examples"] == 6
    expected = official_scores("cb", superglue_dir, tmp_path / "run", "yesno")
    for key, value in expected.items():
        assert result.metrics["tasks"]["cb"][key] == pytest.approx(value, abs=1e-3), key
    scored = evaluate(result.model_dir, split="validation", data_dir=str(superglue_dir), bf16=False)
    assert scored["score"] == result.metrics["score"]


NATIVE = {
    "cb": (("entailment", "contradiction", "neutral"), 12, 6),
    "copa": (("choice1", "choice2"), 8, 4),
    "multirc": (("false", "true"), 12, 8),  # one row per answer: 3 passages x 2 questions x 2 answers
}


@pytest.mark.parametrize("task", list(NATIVE))
def test_native_input_format_end_to_end(tmp_path, tiny_backbone, superglue_dir, task):
    """--input-format native: the task's own labels, one row per example (per answer for MultiRC), scored with
    each task's official metric as sklearn computes it from the saved probabilities, and the saved model
    evaluates and predicts in the same format."""
    labels, train_rows, eval_rows = NATIVE[task]
    result = train(
        tiny_args(tmp_path, tiny_backbone, superglue_dir, task=task, input_format="native", num_train_epochs=1)
    )
    metrics = result.metrics
    assert (metrics["train_rows"], metrics["eval_rows"]) == (train_rows, eval_rows)
    model, _ = load_classifier(result.model_dir)
    assert tuple(model.config.id2label[i] for i in range(len(labels))) == labels
    assert model.config.dhrd["data"]["input_format"] == "native"
    expected = official_scores(task, superglue_dir, tmp_path / "run", "native")
    assert set(metrics["tasks"][task]) >= set(expected)
    for key, value in expected.items():
        assert metrics["tasks"][task][key] == pytest.approx(value, abs=1e-3), key
    again = evaluate(result.model_dir, bf16=False)  # the saved model reads its validation split natively
    assert again["tasks"] == metrics["tasks"] and again["rows"] == eval_rows
    predict(result.model_dir, tmp_path / "p.jsonl", task=task, split="validation", bf16=False)
    predicted = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    saved = json.loads((tmp_path / "run" / "validation-predictions.json").read_text())
    assert len(predicted) == eval_rows and all(set(r["probabilities"]) == set(labels) for r in predicted)
    gold = {}  # each validation row's native label, from the raw jsonl
    for idx, record in _records(superglue_dir, {"cb": "CB", "copa": "COPA", "multirc": "MultiRC"}[task]).items():
        if task == "multirc":
            for q in record["passage"]["questions"]:
                gold |= {f"multirc-{idx}-{q['idx']}-{a['idx']}": ("false", "true")[a["label"]] for a in q["answers"]}
        else:
            gold[f"{task}-{idx}"] = record["label"] if task == "cb" else f"choice{record['label'] + 1}"
    assert [r["id"] for r in predicted] == saved["ids"] == list(gold)
    for row, probs in zip(predicted, saved["probs"]):
        assert row["label"] == gold[row["id"]] and row["prediction"] == labels[int(np.argmax(probs))]
        assert [row["probabilities"][name] for name in labels] == pytest.approx(probs, abs=1e-5)


def _flipped_task(tmp_path) -> dict:
    """A separable training file and a validation file with every label flipped: the better the model learns,
    the worse it scores, so the best validation epoch is an early one and never the last."""
    import pandas as pd

    rows = _review_rows()
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    flipped = [{"review": r["review"], "stars": {"pos": "neg", "neg": "pos"}[r["stars"]]} for r in rows[:8]]
    pd.DataFrame(flipped).to_csv(tmp_path / "val.csv", index=False)
    return dict(
        train_file=str(tmp_path / "train.csv"),
        validation_file=str(tmp_path / "val.csv"),
        text_column="review",
        label_column="stars",
        task=None,
        lora=False,
        head="linear",
        num_train_epochs=3,
        per_device_train_batch_size=8,
        warmup_steps=0,
        data_dir=None,
        save_total_limit=None,  # every epoch's checkpoint stays, to be scored independently
        seed=1,
    )


def _checkpoint_accuracy(checkpoint: Path, tokenizer, validation: Path) -> float:
    """Accuracy of a checkpoint on the validation file, each row predicted alone (no batching, no padding)."""
    import pandas as pd

    from dhrd.hf.modeling_dhrd import DHRDForSequenceClassification

    model = DHRDForSequenceClassification.from_pretrained(checkpoint).eval()
    rows = pd.read_csv(validation).to_dict("records")
    with torch.no_grad():
        said = [
            model.config.id2label[int(model(**tokenizer(r["review"], return_tensors="pt")).logits.argmax())]
            for r in rows
        ]
    return 100 * float(np.mean([s == r["stars"] for s, r in zip(said, rows)]))


@pytest.fixture(scope="module")
def flipped_runs(tmp_path_factory, tiny_backbone):
    """The flipped task trained twice, keeping the best validation epoch and the last; and the accuracy of every
    epoch's checkpoint, scored independently."""
    from dhrd.modeling import load_tokenizer

    tmp_path = tmp_path_factory.mktemp("flipped")
    task = _flipped_task(tmp_path)
    best = train(tiny_args(tmp_path, tiny_backbone, None, output_dir=str(tmp_path / "best"), **task))
    last = train(tiny_args(tmp_path, tiny_backbone, None, output_dir=str(tmp_path / "last"), best_epoch=False, **task))
    checkpoints = sorted((tmp_path / "best" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name[11:]))
    tokenizer = load_tokenizer(str(tiny_backbone))
    truth = [_checkpoint_accuracy(c, tokenizer, tmp_path / "val.csv") for c in checkpoints]
    return best, last, checkpoints, truth


def test_the_best_validation_epoch_is_the_one_kept(flipped_runs):
    """The saved model is the epoch Trainer chose (its independently scored accuracy is the final score); with
    best_epoch=False, the last epoch's."""
    best, last, checkpoints, truth = flipped_runs
    assert len(checkpoints) == 3 and [e["epoch"] for e in best.metrics["epochs"]] == [1.0, 2.0, 3.0]
    chosen = [str(c) for c in checkpoints].index(best.metrics["best_checkpoint"])
    assert chosen < 2 and truth[chosen] != truth[-1], truth  # keeping the last epoch instead would show
    assert best.metrics["score"] == pytest.approx(truth[chosen])
    assert last.metrics["epochs"] == [] and last.metrics["score"] == pytest.approx(truth[-1])


def test_each_epochs_validation_score_is_its_models(flipped_runs):
    """Each epoch's score is its own model's on the rows in order (Trainer 5.24 grouped validation batches by
    length when training was length-grouped, and the scores compared permuted predictions)."""
    best, _, checkpoints, truth = flipped_runs
    assert [e["score"] for e in best.metrics["epochs"]] == pytest.approx(truth)
    assert best.metrics["best_checkpoint"] == str(checkpoints[int(np.argmax(truth))])  # the first of equal bests
    assert max(truth) > truth[-1], truth  # the flipped labels make the last epoch worse


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
    from dhrd.training.trainer import prepare_run

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
    sampler = type(grouped.trainer._get_train_sampler()).__name__
    assert sampler == "SeedableLengthGroupedSampler"  # dhrd.training.sampling
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
