"""Floors, chance and paired differences with confidence intervals (fast: no model)."""

from __future__ import annotations

import numpy as np
import pytest

from dhrd.data.task_metrics import majority_floor, task_metrics
from dhrd.data.task_splits import load_task_split
from dhrd.stats import check_against_metrics, example_statistics, paired_difference, resampled_scores


@pytest.mark.parametrize("task", ["cb", "copa", "rte", "multirc"])
@pytest.mark.parametrize("input_format", ["yesno", "native"])
def test_per_example_statistics_give_the_official_score(superglue_dir, task, input_format):
    if task == "multirc" and input_format == "native":
        pytest.skip("MultiRC is yes/no in both formats")
    rows = load_task_split(task, "validation", input_format, superglue_dir)
    k = 3 if task == "cb" and input_format == "native" else 2
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert check_against_metrics(task, rows, rng.random((len(rows), k)), input_format)


def test_cb_macro_f1_is_bootstrapped_as_f1_not_accuracy():
    from sklearn.metrics import f1_score

    gold, predicted = np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0])
    stats = {"correct": (gold == predicted).astype(float), "gold": gold, "predicted": predicted}
    score = resampled_scores("cb", stats, np.arange(4)[None, :])[0]
    f1 = f1_score(gold, predicted, labels=[0, 1, 2], average="macro", zero_division=0)
    assert score == pytest.approx((75 + 100 * f1) / 2) and score != pytest.approx(75)


def _accuracy_stats(correct):
    return {"correct": np.asarray(correct, dtype=float)}


def test_a_consistent_gain_has_an_interval_above_zero():
    rng = np.random.default_rng(1)
    n = 300
    base = [_accuracy_stats(rng.random(n) < 0.6) for _ in range(3)]
    # the method fixes 20% of the baseline's errors on every seed and breaks nothing
    better = [_accuracy_stats(np.maximum(b["correct"], rng.random(n) < 0.2)) for b in base]
    result = paired_difference("rte", base, better)
    assert result["difference"] > 0 and result["ci"][0] > 0 and result["verdict"] == "gain"
    assert result["wins"] == 3 and len(result["per_seed"]) == 3 and result["examples"] == n


def test_noise_gives_no_measurable_difference():
    rng = np.random.default_rng(2)
    n = 100
    base = [_accuracy_stats(rng.random(n) < 0.6) for _ in range(3)]
    other = [_accuracy_stats(rng.random(n) < 0.6) for _ in range(3)]
    result = paired_difference("rte", base, other)
    assert result["ci"][0] < result["difference"] < result["ci"][1]
    assert result["verdict"] == "no measurable difference"


def test_pairs_must_match():
    a = _accuracy_stats([1, 0, 1])
    with pytest.raises(ValueError):
        paired_difference("rte", [a], [a, a])
    with pytest.raises(ValueError):
        paired_difference("rte", [a], [_accuracy_stats([1, 0])])


def test_majority_floor_is_the_best_constant_predictor(superglue_dir):
    rows = load_task_split("rte", "validation", "yesno", superglue_dir)
    floor = majority_floor("rte", rows, "yesno", 2)
    labels = [e.label for e in rows]
    assert floor["score"] == pytest.approx(100 * max(labels.count(0), labels.count(1)) / len(labels))
    cb = load_task_split("cb", "validation", "yesno", superglue_dir)
    floor = majority_floor("cb", cb, "yesno", 2)
    # every constant CB relation, scored officially; the floor is the best of them
    for relation in ("entailment", "contradiction", "neutral"):
        yes = np.array([1.0 if e.candidate == relation else 0.0 for e in cb])
        assert task_metrics("cb", cb, np.stack([1 - yes, yes], -1), "yesno")["score"] <= floor["score"]
    assert floor["predictor"].startswith("always ")


def test_statistics_follow_first_appearance_of_groups(superglue_dir):
    rows = load_task_split("multirc", "validation", "yesno", superglue_dir)
    stats = example_statistics("multirc", rows, np.tile([0.2, 0.8], (len(rows), 1)), "yesno")
    assert len(stats["tp"]) == len({e.group for e in rows})


def test_bits_dropout_keeps_the_drop_rate_and_scales_like_dropout():
    import torch

    from dhrd.training.dropout import BitsDropout, keep_mask, use_bits_dropout

    torch.manual_seed(0)
    mask = keep_mask(torch.Size([400, 500]), 0.1, torch.device("cpu"))
    assert abs(1 - mask.float().mean().item() - 0.1) < 0.005
    layer = BitsDropout(0.1)
    x = torch.ones(1000, 100, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()  # gradients flow through the kept elements only, scaled
    assert torch.equal(x.grad != 0, kept)
    layer.eval()
    assert torch.equal(layer(x), x)
    model = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(2, 2), torch.nn.Dropout(0.0))
    assert use_bits_dropout(model) == 1 and isinstance(model[0], BitsDropout)
