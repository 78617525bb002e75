"""The reasoning head's loss: the vocabulary projection and its cross-entropy, a chunk of tokens at a time.

Projecting every LM target onto a 49,152-word vocabulary is most of what DHRD adds to a pooled step. Done in one
piece it holds the (targets x vocabulary) logits in float32 two or three times over for the backward pass (half a
gigabyte for 1,200 targets), and the soft-max and its gradient stream through them from memory. Here each chunk of
targets is projected, its loss summed and its gradients computed while the chunk is still in cache; only the
gradients with respect to the hidden states (targets x hidden) and, when the head trains, its weight are kept.
That is the gradient autograd would compute, in the same dtypes (the matmuls in the autocast dtype, the soft-max
in float32). torch's ``linear_cross_entropy`` with chunking options does the same but was 3x slower than the
plain projection on this CPU (its matmuls ran in float32) and rounds the loss to bfloat16.

The gradients are computed in the forward pass, so the loss supports first-order gradients only (no double
backward); with ``retain_graph`` it can be differentiated more than once, as the loss-term gradient norms are.
"""

from __future__ import annotations

import torch

# about 6M float32 logits a chunk (128 targets of a 49,152-word vocabulary): measured fastest of 32-512 targets
_CHUNK_ELEMENTS = 6 * 2**20


def _compute_dtype(states: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device = states.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return weight.dtype


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, states, weight, targets, dtype, need_states, need_weight, target_weights):
        w = weight.to(dtype)
        rows = max(1, _CHUNK_ELEMENTS // weight.shape[0])
        total = torch.zeros((), dtype=torch.float32, device=states.device)
        grad_states = torch.empty(states.shape, dtype=dtype, device=states.device) if need_states else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        for start in range(0, states.shape[0], rows):
            h = states[start : start + rows].to(dtype)
            t = targets[start : start + rows]
            logits = (h @ w.T).float()
            log_norm = torch.logsumexp(logits, dim=-1)
            losses = log_norm - logits.gather(1, t[:, None]).squeeze(1)
            scale = None if target_weights is None else target_weights[start : start + rows].float()
            total += (losses if scale is None else losses * scale).sum()
            if need_states or need_weight:
                grad_logits = logits.sub_(log_norm[:, None]).exp_()  # the soft-max, in place
                grad_logits[torch.arange(len(t), device=t.device), t] -= 1
                if scale is not None:
                    grad_logits.mul_(scale[:, None])
                grad_logits = grad_logits.to(dtype)
                if need_states:
                    grad_states[start : start + rows] = grad_logits @ w
                if need_weight:
                    grad_weight += (grad_logits.T @ h).float()
        ctx.save_for_backward(grad_states, grad_weight)
        ctx.dtypes = (states.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_states, grad_weight = ctx.saved_tensors
        states_dtype, weight_dtype = ctx.dtypes
        return (
            None if grad_states is None else (grad_states * grad_total).to(states_dtype),
            None if grad_weight is None else (grad_weight * grad_total).to(weight_dtype),
            None,
            None,
            None,
            None,
            None,
        )


def linear_cross_entropy_sum(
    states: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, target_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``cross_entropy(states @ weight.T, targets, reduction="sum")`` for (n, hidden) states, every target valid,
    without the (n, vocabulary) logits ever held whole. ``target_weights`` (n,): each target's loss times its
    weight (constants: no gradient flows to them)."""
    grad_on = torch.is_grad_enabled()
    return _ChunkedLinearCrossEntropy.apply(
        states,
        weight,
        targets,
        _compute_dtype(states, weight),
        grad_on and states.requires_grad,
        grad_on and weight.requires_grad,
        None if target_weights is None else target_weights.detach(),
    )
