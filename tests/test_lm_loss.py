import pytest
import torch

from dhrd.training import lm_loss
from dhrd.training.lm_loss import linear_cross_entropy_sum


def reference(states, weight, targets):
    logits = torch.nn.functional.linear(states, weight)
    return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")


def inputs(n=37, vocab=53, hidden=8, train_weight=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(n, hidden, generator=generator).requires_grad_()
    weight = torch.randn(vocab, hidden, generator=generator).requires_grad_(train_weight)
    targets = torch.randint(0, vocab, (n,), generator=generator)
    return states, weight, targets


def grads(loss_fn, states, weight, targets, scale=0.37):
    states = states.detach().clone().requires_grad_()
    weight = weight.detach().clone().requires_grad_(weight.requires_grad)
    loss = loss_fn(states, weight, targets)
    (scale * loss).backward()  # a scaled loss, as the trainer's alpha / tokens
    return loss.detach(), states.grad, weight.grad


@pytest.mark.parametrize("chunk_elements", [53 * 5, 53 * 37, 10**6])  # 8 chunks, one exactly, one larger
@pytest.mark.parametrize("train_weight", [True, False])
def test_same_loss_and_gradients_as_linear_then_cross_entropy(monkeypatch, chunk_elements, train_weight):
    monkeypatch.setattr(lm_loss, "_CHUNK_ELEMENTS", chunk_elements)
    states, weight, targets = inputs(train_weight=train_weight)
    got = grads(linear_cross_entropy_sum, states, weight, targets)
    expected = grads(reference, states, weight, targets)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])
    if train_weight:
        torch.testing.assert_close(got[2], expected[2])
    else:
        assert got[2] is None


def test_under_bf16_autocast_it_matches_the_autocast_reference(monkeypatch):
    monkeypatch.setattr(lm_loss, "_CHUNK_ELEMENTS", 53 * 4)
    states, weight, targets = inputs(n=64, hidden=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = grads(linear_cross_entropy_sum, states, weight, targets)
        expected = grads(reference, states, weight, targets)
    assert got[1].dtype == got[2].dtype == torch.float32  # returned in the parameters' dtypes
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-3)  # the loss is summed in float32
    for a, b in zip(got[1:], expected[1:]):  # bf16 matmuls either way; the scale is applied before or after rounding
        assert (a - b).norm() / b.norm() < 5e-3
    assert not torch.equal(got[0], reference(states.detach(), weight.detach(), targets)), "it ran in bf16"


def test_without_grad_it_only_scores(monkeypatch):
    states, weight, targets = inputs()
    with torch.no_grad():
        loss = linear_cross_entropy_sum(states, weight, targets)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, reference(states, weight, targets).detach())


def test_no_targets_is_a_zero_loss_with_zero_gradients():
    states, weight, _ = inputs()
    loss = linear_cross_entropy_sum(states[:0], weight, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0
    assert weight.grad is not None and not weight.grad.any()
