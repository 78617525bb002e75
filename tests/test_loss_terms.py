"""The two loss terms and their gradient norms in the training log, and the LM loss's normalisation."""

import json

import pytest
import torch
from conftest import loss_trainer, tiny_run, write_jsonl

from dhrd import DHRDTrainingArguments, train
from dhrd.training.lm_loss import linear_cross_entropy_sum
from dhrd.training.loss_terms import reasoning_loss_sum, trained_parameters


def _trainer_and_batch(tiny_backbone, tmp_path, **settings):
    trainer, classifier, lm, batch = loss_trainer(
        tiny_backbone, tmp_path, alpha=0.5, beta=2.0, logging_steps=2, **settings
    )
    classifier.train()
    for module in classifier.modules():  # the training branch, without dropout: one network for every pass
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    trainer.state.logging_steps = 2
    return trainer, classifier, lm, batch


def _gradient(loss, parameters):
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(parameters, grads)])


def test_logged_terms_and_gradient_norms_equal_a_hand_computation(tiny_backbone, tmp_path):
    trainer, classifier, lm, batch = _trainer_and_batch(tiny_backbone, tmp_path, log_grad_norms=True)
    trainer.state.global_step = 1  # the step under way is step 2, a logging step
    trainer.compute_loss(classifier, batch)
    trainer.log({"loss": 9.0, "learning_rate": 1e-3})
    logged = trainer.state.log_history[-1]

    # by hand: the classification cross-entropy and transformers' own LM loss (a mean over the valid tokens)
    parameters = trained_parameters(classifier)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pool_index")}
    cls = torch.nn.functional.cross_entropy(classifier(**inputs).logits, batch["labels"])
    lm_loss = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["lm_labels"]).loss
    g_cls, g_lm = _gradient(cls, parameters), _gradient(lm_loss, parameters)
    # the parameters both terms train: every one but the classification head's
    lm_reaches = torch.cat([torch.full((p.numel(),), "score" not in n) for n, p in classifier.named_parameters()])
    g_shared = g_cls[lm_reaches]

    assert logged["loss"] == 9.0  # Trainer's own figure is left as it is
    assert logged["loss_cls"] == pytest.approx(cls.item(), rel=1e-4)
    assert logged["loss_lm"] == pytest.approx(lm_loss.item(), rel=1e-4)
    assert logged["grad_norm_cls"] == pytest.approx(g_cls.norm().item(), rel=1e-3)
    assert logged["grad_norm_lm"] == pytest.approx(g_lm.norm().item(), rel=1e-3)
    assert logged["grad_norm_cls_shared"] == pytest.approx(g_shared.norm().item(), rel=1e-3)
    assert logged["grad_norm_cls_shared"] < logged["grad_norm_cls"]
    cosine = torch.nn.functional.cosine_similarity(g_shared, g_lm[lm_reaches], dim=0).item()
    assert logged["grad_cosine"] == pytest.approx(cosine, abs=1e-3)
    assert g_cls.norm() > 0 and g_lm.norm() > 0


def test_terms_are_means_since_the_last_log_and_norms_only_on_logging_steps(tiny_backbone, tmp_path):
    trainer, classifier, _, batch = _trainer_and_batch(tiny_backbone, tmp_path, log_grad_norms=True)
    first, second = ({k: v[rows] for k, v in batch.items()} for rows in (slice(0, 2), slice(2, 4)))
    trainer.state.global_step = 0  # step 1: no log at its end, so no gradient norms
    terms = []
    for half in (first, second):
        trainer.compute_loss(classifier, half)
        terms.append(dict(trainer._term_sums))
    assert getattr(trainer, "_term_norms", None) is None
    trainer.log({"loss": 1.0, "learning_rate": 1e-3})
    logged = trainer.state.log_history[-1]
    assert terms[1]["loss_cls"][1] == 2  # two micro-batches recorded
    assert logged["loss_cls"] == pytest.approx(terms[1]["loss_cls"][0] / 2)
    assert "grad_norm_cls" not in logged
    trainer.log({"loss": 1.0, "learning_rate": 1e-3})  # nothing recorded since: no stale terms
    assert "loss_cls" not in trainer.state.log_history[-1]
    classifier.eval()  # validation passes record nothing
    trainer.compute_loss(classifier, first)
    assert not trainer._term_sums


@pytest.mark.parametrize("chunked", [True, False])
def test_per_example_normalisation_averages_each_rows_mean(chunked):
    torch.manual_seed(0)
    weight = torch.randn(11, 4, requires_grad=True)
    hidden = torch.randn(3, 6, 4, requires_grad=True)
    labels = torch.tensor([[1, 2, 3, -100, -100, -100], [-100, 4, 5, 6, 7, 8], [-100] * 6])
    total, count = reasoning_loss_sum(weight, hidden, labels, chunked=chunked, per_example=True)
    logits = hidden @ weight.T
    per_row = []
    for row in range(2):  # the third row has no target and is not counted
        valid = labels[row, 1:] != -100
        per_row.append(torch.nn.functional.cross_entropy(logits[row, :-1][valid], labels[row, 1:][valid]))
    expected = torch.stack(per_row).sum()
    assert count == 2
    torch.testing.assert_close(total, expected)
    grads = torch.autograd.grad(total, (weight, hidden))
    reference = torch.autograd.grad(expected, (weight, hidden))
    for got, want in zip(grads, reference):
        torch.testing.assert_close(got, want)


def test_target_weights_scale_each_targets_loss_and_gradient():
    torch.manual_seed(1)
    states, weight = torch.randn(5, 4, requires_grad=True), torch.randn(9, 4, requires_grad=True)
    targets, scale = torch.tensor([0, 3, 8, 2, 2]), torch.tensor([1.0, 0.5, 0.25, 2.0, 0.0])
    got = linear_cross_entropy_sum(states, weight, targets, scale)
    want = (torch.nn.functional.cross_entropy(states @ weight.T, targets, reduction="none") * scale).sum()
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (states, weight)), torch.autograd.grad(want, (states, weight))):
        torch.testing.assert_close(a, b)


def test_a_run_writes_its_loss_terms_into_metrics(tmp_path, tiny_backbone, superglue_dir):
    output = tmp_path / "run"
    rationales = write_jsonl(
        tmp_path / "cb.jsonl", [{"idx": i, "rationale": f"Ann said so on day {i}."} for i in range(12)]
    )
    settings = tiny_run(tiny_backbone, superglue_dir, method="dhrd", logging_steps=1, log_grad_norms=True)
    train(
        DHRDTrainingArguments(
            output_dir=str(output), lm_normalization="example", rationales=str(rationales), **settings
        )
    )
    metrics = json.loads((output / "metrics.json").read_text())
    terms = metrics["loss_terms"]
    assert terms and [t["step"] for t in terms] == list(range(1, len(terms) + 1))
    for entry in terms:
        assert {"loss", "loss_cls", "loss_lm", "grad_norm_cls", "grad_norm_lm", "grad_cosine"} <= entry.keys()
        assert -1.0 - 1e-6 <= entry["grad_cosine"] <= 1.0 + 1e-6
    pooled = tmp_path / "pooled"
    train(DHRDTrainingArguments(output_dir=str(pooled), **tiny_run(tiny_backbone, superglue_dir, logging_steps=1)))
    entries = json.loads((pooled / "metrics.json").read_text())["loss_terms"]
    assert entries and all("loss_lm" not in t and "loss_cls" in t for t in entries)
