"""The loss's reasoning term and the per-term diagnostics the training log carries (``--log-grad-norms``)."""

from __future__ import annotations

import torch
from torch import nn

from .lm_loss import linear_cross_entropy_sum


def reasoning_loss_sum(
    weight: torch.Tensor, hidden: torch.Tensor, lm_labels: torch.Tensor, chunked: bool = True, per_example: bool = False
):
    """Sum of next-token cross-entropies over the valid targets, and their count. Only positions with a
    target go through the vocabulary projection (the reasoning head), which saves most of its cost; ``chunked``,
    a chunk of them at a time (``dhrd.training.lm_loss``: the same gradients, in less time and memory). ``per_example``:
    the sum of each row's mean over its own targets, and the number of rows with a target (a long input then
    weighs as much as a short one)."""
    targets = lm_labels[:, 1:]
    valid = targets != -100
    weights = None
    if per_example:
        per_row = valid.sum(1, keepdim=True)
        weights = (1.0 / per_row.clamp(min=1)).expand_as(valid)[valid]
    states, targets = hidden[:, :-1][valid], targets[valid]
    count = (valid.any(1) if per_example else valid).sum()
    if chunked:
        return linear_cross_entropy_sum(states, weight, targets, weights), count
    logits = nn.functional.linear(states.to(weight.dtype), weight)
    losses = nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    return (losses if weights is None else losses * weights).sum(), count


def trained_parameters(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def term_gradient_norms(parameters: list[torch.Tensor], cls_loss: torch.Tensor, lm_loss: torch.Tensor) -> dict:
    """The L2 norm of each loss term's gradient on ``parameters``, the classification gradient's norm on the
    parameters both terms train (``_shared``: the backbone's, not the head's, which the LM loss never reaches),
    and the cosine between the two gradients there (negative: the terms pull the shared weights apart). The
    graph is kept for the step's own backward pass."""
    cls_grads, lm_grads = (
        torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True) for term in (cls_loss, lm_loss)
    )

    def square(g) -> float:
        return 0.0 if g is None else float(g.float().pow(2).sum())

    shared = [i for i, g in enumerate(lm_grads) if g is not None]
    cls_norm, lm_norm = (sum(map(square, grads)) ** 0.5 for grads in (cls_grads, lm_grads))
    shared_norm = sum(square(cls_grads[i]) for i in shared) ** 0.5
    dot = sum(float((cls_grads[i].float() * lm_grads[i].float()).sum()) for i in shared if cls_grads[i] is not None)
    cosine = dot / (shared_norm * lm_norm) if shared_norm and lm_norm else 0.0
    return {
        "grad_norm_cls": cls_norm,
        "grad_norm_cls_shared": shared_norm,
        "grad_norm_lm": lm_norm,
        "grad_cosine": cosine,
    }


# the training log's entries of each term (unweighted) and, with --log-grad-norms, their gradients
LOSS_TERM_KEYS = (
    "loss",
    "loss_cls",
    "loss_lm",
    "grad_norm",
    "grad_norm_cls",
    "grad_norm_cls_shared",
    "grad_norm_lm",
    "grad_cosine",
)
