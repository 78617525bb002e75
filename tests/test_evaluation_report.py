"""Your own data evaluated as users expect: the per-class report and confusion matrix (JSON and PNG) of
`evaluate` and of training, class weights in the classification loss, the best epoch chosen by any metric,
and early stopping."""

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import classification_report, confusion_matrix
from sklearn.utils.class_weight import compute_class_weight
from typer.testing import CliRunner

from dhrd import DHRDTrainingArguments, evaluate, predict, train
from dhrd.cli.commands import app
from dhrd.data.examples import Example
from dhrd.data.task_splits import load_task_split
from dhrd.data.tasks import choice_predictions
from dhrd.errors import DHRDInputError
from dhrd.inference.class_report import class_report
from dhrd.training.class_weights import class_weight_values
from dhrd.training.resume import changed_settings
from dhrd.training.trainer import DHRDTrainer, prepare_run

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _reviews(n_neg: int, n_pos: int, start: int = 0) -> list[dict]:
    """Reviews a word decides ("good"/"great" positive, "bad"/"awful" negative), ``n_neg`` then ``n_pos``."""
    neg = [{"review": f"the {('bad', 'awful')[k % 2]} movie {start + k}", "stars": "neg"} for k in range(n_neg)]
    pos = [{"review": f"the {('good', 'great')[k % 2]} movie {start + k}", "stars": "pos"} for k in range(n_pos)]
    return neg + pos


def _files(tmp_path, train_rows, val_rows) -> dict:
    pd.DataFrame(train_rows).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(val_rows).to_csv(tmp_path / "val.csv", index=False)
    return dict(
        train_file=str(tmp_path / "train.csv"),
        validation_file=str(tmp_path / "val.csv"),
        text_column="review",
        label_column="stars",
        task=None,
    )


def _args(tmp_path, backbone, name="run", **overrides) -> DHRDTrainingArguments:
    settings = dict(
        output_dir=str(tmp_path / name),
        backbone=str(backbone),
        lora=False,
        head="linear",
        learning_rate=3e-3,
        num_train_epochs=1,
        per_device_train_batch_size=8,
        warmup_steps=0,
        bf16=False,
        max_length=64,
        logging_steps=1,
        seed=1,
    )
    settings.update(overrides)
    return DHRDTrainingArguments(**settings)


# ------------------------------------------------------------------------------------------------- report
def test_evaluate_writes_the_per_class_report_and_confusion_matrix_of_its_predictions(tmp_path, tiny_backbone):
    """One epoch on an imbalanced file: `evaluate` (API and CLI) reports sklearn's per-class figures and
    confusion matrix of exactly the predictions `predict` makes, with label names, and writes the PNG."""
    data = _files(tmp_path, _reviews(4, 12), _reviews(3, 7, start=100))
    result = train(_args(tmp_path, tiny_backbone, **data))
    assert set(result.metrics["classes"]["custom"]["per_class"]) == {"neg", "pos"}
    assert (tmp_path / "run" / "metrics-confusion.png").read_bytes()[:8] == PNG_MAGIC

    metrics = evaluate(tmp_path / "run", file=data["validation_file"], output=tmp_path / "eval.json", bf16=False)
    predict(tmp_path / "run", tmp_path / "preds.jsonl", file=data["validation_file"], bf16=False)
    rows = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    gold, said = [r["label"] for r in rows], [r["prediction"] for r in rows]

    saved = json.loads((tmp_path / "eval.json").read_text())
    report = saved["classes"]["custom"]
    assert saved["classes"] == metrics["classes"] and report["labels"] == ["neg", "pos"]
    expected = classification_report(gold, said, labels=["neg", "pos"], output_dict=True, zero_division=0)
    for name in ("neg", "pos"):
        for ours, theirs in [("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")]:
            assert report["per_class"][name][ours] == pytest.approx(100 * expected[name][theirs], abs=1e-3)
        assert report["per_class"][name]["support"] == expected[name]["support"]
    assert report["per_class"]["pos"]["support"] == 7
    assert report["macro_avg"]["f1"] == pytest.approx(saved["tasks"]["custom"]["macro_f1"], abs=1e-3)
    assert report["confusion_matrix"] == confusion_matrix(gold, said, labels=["neg", "pos"]).tolist()
    assert saved["confusion_png"] == str(tmp_path / "eval-confusion.png")
    assert saved["floors"]["custom"] == {"score": 70.0, "predictor": "always 'pos'"}  # 7 of the 10 rows
    assert (tmp_path / "eval-confusion.png").read_bytes()[:8] == PNG_MAGIC

    cli = runner.invoke(
        app, ["evaluate", "--model", str(tmp_path / "run"), "--file", data["validation_file"]], env={"COLUMNS": "400"}
    )
    assert cli.exit_code == 0, cli.output
    assert "per class" in cli.output and "neg" in cli.output and "macro avg" in cli.output
    # a file is named in the title and has its own result file: the validation split's is never overwritten
    name = Path(data["validation_file"]).name
    assert f"metricson{data['validation_file']}" in "".join(cli.output.split())  # the title, however it wraps
    assert "validation metrics" not in cli.output
    assert (tmp_path / "run" / "model" / f"eval-file-{name}.json").is_file()
    assert (tmp_path / "run" / "model" / f"eval-file-{name}-confusion.png").is_file()
    assert not (tmp_path / "run" / "model" / "eval-validation.json").exists()


def test_candidate_tasks_are_reported_per_example_on_the_chosen_candidate(superglue_dir):
    """Yes/no CB: one row per relation, but the report is per example: the relation with the highest P(Yes)
    against the gold one, CB's three classes (as its official F1 scores them)."""
    examples = load_task_split("cb", "validation", "yesno", superglue_dir)
    probs = np.random.default_rng(0).random((len(examples), 2))
    report = class_report(examples, probs, "yesno", ["No", "Yes"])["cb"]
    predicted, gold = choice_predictions(examples, probs)
    names = ["entailment", "contradiction", "neutral"]
    assert report["labels"] == names and report["unit"].startswith("example")
    assert report["confusion_matrix"] == confusion_matrix(gold, predicted, labels=names).tolist()
    assert sum(v["support"] for v in report["per_class"].values()) == len(gold) == 6


# --------------------------------------------------------------------------------------------- class weights
class _Logits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, return_last_hidden_state=False, **inputs):
        return SimpleNamespace(logits=self.logits)


def test_class_weights_make_the_classification_loss_a_weighted_cross_entropy():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 2, 1, 2])
    weights = torch.tensor([1.0, 4.0, 0.5])
    model = _Logits(logits).eval()

    def loss(class_weights, beta=1.0):
        trainer = SimpleNamespace(alpha=0.0, beta=beta, class_weights=class_weights)
        return DHRDTrainer.compute_loss(trainer, model, {"input_ids": None, "labels": labels})

    nll = -torch.log_softmax(logits, -1)[torch.arange(4), labels]
    by_hand = (weights[labels] * nll).sum() / weights[labels].sum()  # PyTorch's weighted mean
    assert loss(weights) == pytest.approx(float(by_hand), rel=1e-6)
    assert loss(weights) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels, weight=weights)))
    assert loss(None) == pytest.approx(float(nll.mean()))
    assert loss(weights, beta=0.5) == pytest.approx(0.5 * float(by_hand), rel=1e-6)  # only the CE term is weighted
    assert abs(float(loss(weights)) - float(loss(None))) > 1e-3


def _rows(labels, task="custom"):
    return [Example(str(k), task, "t", label, str(k)) for k, label in enumerate(labels)]


def test_balanced_weights_are_sklearns_and_bad_settings_are_one_line_errors():
    labels = [0] * 6 + [1] * 3 + [2] * 1
    names = ("a", "b", "c")
    weights = class_weight_values("balanced", _rows(labels), names, "native")
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(labels))
    assert weights == pytest.approx(expected.tolist()) and weights == pytest.approx([10 / 18, 10 / 9, 10 / 3])
    assert class_weight_values("c=3,a=0.5", _rows(labels), names, "native") == [0.5, 1.0, 3.0]
    assert class_weight_values({"b": 2}, _rows(labels), names, "native") == [1.0, 2.0, 1.0]
    assert class_weight_values(None, _rows(labels), names, "native") is None
    with pytest.raises(DHRDInputError, match="no training row has the label c"):
        class_weight_values("balanced", _rows([0, 1, 1]), names, "native")
    with pytest.raises(DHRDInputError, match="d is not a label"):
        class_weight_values("d=2", _rows(labels), names, "native")
    with pytest.raises(DHRDInputError, match="expected 'balanced' or label=weight"):
        class_weight_values("heavy", _rows(labels), names, "native")
    with pytest.raises(DHRDInputError, match="cb in the yesno format is one Yes/No row per candidate"):
        class_weight_values("balanced", _rows([0, 0, 1], task="cb"), ("No", "Yes"), "yesno")


def test_class_weights_reach_the_trainer_and_are_part_of_the_run(tmp_path, tiny_backbone):
    data = _files(tmp_path, _reviews(4, 12), _reviews(2, 2, start=100))
    run = prepare_run(_args(tmp_path, tiny_backbone, class_weights="balanced", **data))
    assert run.trainer.class_weights.tolist() == pytest.approx([2.0, 2 / 3])  # 16 rows: 4 neg, 12 pos
    saved = asdict(_args(tmp_path, tiny_backbone))
    assert changed_settings(saved, _args(tmp_path, tiny_backbone, class_weights="balanced")) == ["class_weights"]
    assert changed_settings(saved, _args(tmp_path, tiny_backbone, early_stopping_patience=2)) == []


# ------------------------------------------------------------------------------------- best epoch, stopping
def test_the_best_metric_name_is_resolved_and_its_direction_inferred(tmp_path, tiny_backbone):
    data = _files(tmp_path, _reviews(4, 4), _reviews(2, 2, start=100))
    for name, key, greater in [
        ("score", "score", True),
        ("loss", "loss", False),
        ("macro_f1", "custom/macro_f1", True),
        ("recall:neg", "custom/recall:neg", True),
        ("custom/accuracy", "custom/accuracy", True),
    ]:
        args = _args(tmp_path, tiny_backbone, num_train_epochs=2, metric_for_best_model=name, **data)
        trainer_args = prepare_run(args).trainer.args
        assert (trainer_args.metric_for_best_model, trainer_args.greater_is_better) == (key, greater)
    choices = r"choose score, loss, accuracy, macro_f1 or precision\|recall\|f1:<label> \(labels: neg, pos\)"
    with pytest.raises(DHRDInputError, match=f"f1:maybe is not a validation metric of this run; {choices}"):
        prepare_run(_args(tmp_path, tiny_backbone, num_train_epochs=2, metric_for_best_model="f1:maybe", **data))
    with pytest.raises(DHRDInputError, match="--early-stopping-patience needs a validation pass every epoch"):
        prepare_run(_args(tmp_path, tiny_backbone, num_train_epochs=1, early_stopping_patience=1, **data))
    cli = runner.invoke(app, ["train", "--train-file", data["train_file"], "--metric_for_best_model", "f1:x"])
    # the HF spelling is an accepted alias: the run gets as far as reading the data (a label column it lacks)
    assert cli.exit_code == 2 and "missing column" in cli.output and "metric_for_best_model" not in cli.output


def test_the_best_epoch_is_the_best_by_the_chosen_metric(tmp_path, tiny_backbone):
    """A separable task: accuracy reaches 100 and stays (the first 100 would be kept by score) while the
    validation loss keeps falling: chosen by loss, the kept epoch is the one with the lowest loss."""
    data = _files(tmp_path, _reviews(12, 12), _reviews(4, 4, start=100))
    result = train(
        _args(tmp_path, tiny_backbone, num_train_epochs=4, metric_for_best_model="loss", save_total_limit=None, **data)
    )
    epochs = result.metrics["epochs"]
    losses, scores = [e["loss"] for e in epochs], [e["score"] for e in epochs]
    chosen = int(np.argmin(losses))
    assert result.metrics["metric_for_best_model"] == "loss"
    assert result.metrics["best_checkpoint"].endswith(f"checkpoint-{3 * (chosen + 1)}")  # 3 steps an epoch
    assert chosen != int(np.argmax(scores)), (losses, scores)  # chosen by score, another epoch would be kept


def test_early_stopping_stops_a_run_whose_metric_does_not_improve(tmp_path, tiny_backbone):
    """Validation labels flipped: the better the model learns, the worse it scores, so with patience 1 the run
    stops one epoch after its best; run again, the finished run trains no further."""
    train_rows = _reviews(12, 12)
    flipped = [{**r, "stars": {"pos": "neg", "neg": "pos"}[r["stars"]]} for r in _reviews(4, 4, start=100)]
    data = _files(tmp_path, train_rows, flipped)
    args = _args(tmp_path, tiny_backbone, num_train_epochs=6, early_stopping_patience=1, **data)
    result = train(args)
    epochs = [e["epoch"] for e in result.metrics["epochs"]]
    scores = [e["score"] for e in result.metrics["epochs"]]
    best = int(np.argmax(scores))
    assert result.metrics["stopped_early"] and len(epochs) < 6, scores
    assert len(epochs) == best + 2  # the best epoch, then one (patience 1) that is no better
    assert result.metrics["score"] == pytest.approx(scores[best])
    again = train(args)
    assert [e["epoch"] for e in again.metrics["epochs"]] == epochs and again.metrics["stopped_early"]
    assert again.metrics["best_checkpoint"] == result.metrics["best_checkpoint"]


# ------------------------------------------------------------------------------------------ not learnt
def test_a_score_at_the_majority_floor_is_reported_as_not_learnt():
    """A run's metrics carry each task's majority floor; a score not above it gets a line, one above it none."""
    from dhrd.data.task_metrics import floors, not_learnt

    rows = [Example(id=f"r{i}", task="custom", text="t", label=int(i < 3), group=f"r{i}") for i in range(4)]
    floor = floors(rows, "native", 2, chance=False, label_names=["neg", "pos"])
    assert floor == {"custom": {"score": 75.0, "predictor": "always 'pos'"}}  # 3 of 4 rows are label 1
    assert floors(rows, "native", 2, chance=False)["custom"]["predictor"] == "always label 1"
    at_floor = {"tasks": {"custom": {"score": 75.0}}, "floors": floor}
    assert len(lines := not_learnt(at_floor)) == 1 and "majority floor 75.00 (always 'pos')" in lines[0]
    assert not_learnt({"tasks": {"custom": {"score": 100.0}}, "floors": floor}) == []
    assert not_learnt({"tasks": {"custom": {"score": 50.0}}}) == []  # scores written before floors were kept


def test_training_on_a_one_label_validation_file_warns_that_it_cannot_show_learning(tmp_path, tiny_backbone):
    """Every validation row is 'pos': always 'pos' scores 100, so no model is above the floor; `dhrd train`
    prints the scores, then the warning on stderr, and metrics.json keeps the floor."""
    data = _files(tmp_path, _reviews(4, 12), _reviews(0, 6, start=100))
    cli = runner.invoke(
        app,
        ["train", "--train-file", data["train_file"], "--validation-file", data["validation_file"]]
        + ["--text-column", "review", "--label-column", "stars", "--backbone", str(tiny_backbone)]
        + ["--output-dir", str(tmp_path / "run"), "--no-bf16", "--no-lora", "--max-length", "64"],
        env={"COLUMNS": "400"},
    )
    assert cli.exit_code == 0, cli.output
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["floors"]["custom"] == {"score": 100.0, "predictor": "always 'pos'"}
    warning = next(line for line in cli.output.splitlines() if line.startswith("warning:"))
    assert "validation: custom: score" in warning and "not above the majority floor 100.00" in warning
    # `dhrd evaluate` on the same file: the floor in its JSON, the same warning naming the file
    evaluated = runner.invoke(
        app,
        ["evaluate", "--model", str(tmp_path / "run"), "--file", data["validation_file"]],
        env={"COLUMNS": "400"},
    )
    assert evaluated.exit_code == 0, evaluated.output
    warning = next(line for line in evaluated.output.splitlines() if line.startswith("warning:"))
    assert f"{data['validation_file']}: custom: score" in warning and "majority floor 100.00" in warning
    saved = json.loads(next((tmp_path / "run" / "model").glob("eval-file-*.json")).read_text())
    assert saved["floors"]["custom"]["score"] == 100.0
