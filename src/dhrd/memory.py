"""Resident memory: measuring it, giving freed memory back, and bounding what a training step keeps.

Measured on SmolLM2-135M with LoRA (fp32, 2-core CPU, ``results/memory-smollm2-cpu.md``), three things made a
135 M-parameter model's training hold 10-18 GB:

* **The activations a step keeps for its backward pass.** About 70 KB a token in each of the 30 layers (the
  MLP's 1,536-wide intermediates, LoRA's dropout copies of each projection's input, eager attention's
  probabilities): 8 x 512 tokens keep 10 GB. ``ActivationBudget`` recomputes as many layers in the backward pass
  (transformers' activation checkpointing, per layer) as it takes to keep them under ``--activation-memory``;
  short batches recompute nothing.
* **glibc's allocator.** Its mmap threshold grows with each large block freed (up to 32 MB), after which the
  activations, all under 32 MB, come from the heap, whose holes the allocator keeps: a forward pass of 8 x 256
  tokens held 9.2 GB for 5.7 GB of tensors, and the step's memory stayed resident after it. ``pin_mmap_threshold``
  fixes the threshold at 4 MB, so every large tensor block is its own mapping, unmapped when freed, while the
  small ones reuse the heap. (At glibc's initial 128 KB every block was mapped afresh and first-touch page
  faults took 40% of a step's CPU time: 4 MB trained 1.8x faster for 0.4-0.5 GB more peak,
  ``results/memory-smollm2-cpu.md``.)
* **Freed memory between runs.** ``release_memory`` collects reference cycles (a trainer and the run that holds
  it) and trims the allocator's free lists, after each run and at each epoch's end.
* **oneDNN's primitive cache.** bf16 matmuls keep JIT-compiled kernels for up to 1,024 shapes for the life of the
  process, and every padded batch length brings new ones: a second cell in one process started on what the
  first had cached. ``cap_onednn_cache`` keeps 128.

Figures are in GB (2**30 bytes) from ``/proc/self/status``: ``VmRSS`` now and ``VmHWM`` (the peak), which
``reset_peak`` resets (Linux's ``clear_refs``) so that each run of a process gets its own peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the CLI pins the allocator before anything heavy loads
    import torch

logger = logging.getLogger(__name__)

GB = 2**30
_STATUS = Path("/proc/self/status")
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
# fixed: big activations mapped and unmapped (a bounded peak), the many small blocks from the reused heap (no page
# faults); 128 KB (glibc's initial value) faulted every block in afresh each step, the dynamic one (up to 32 MB)
# let the heap hold the activations' holes (results/memory-smollm2-cpu.md)
_MMAP_THRESHOLD = 4 * 2**20
# oneDNN's primitive cache: above the few dozen primitives of one training step's shapes, far below the default
# 1,024, which kept every padded length's kernels (cap_onednn_cache)
ONEDNN_CACHE_CAPACITY = 128


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def rss_gb() -> float | None:
    """Resident memory of this process now, in GB (None where ``/proc`` is missing)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else round(kb / 2**20, 3)


def peak_rss_gb() -> float | None:
    """The most resident memory this process held since it started or since ``reset_peak``, in GB."""
    kb = _status_kb("VmHWM")
    if kb is None:
        try:
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux; never reset
        except (ImportError, OSError):
            return None
    return round(kb / 2**20, 3)


def reset_peak() -> bool:
    """Start a new peak (``VmHWM``) from the present resident memory. False where the kernel has no way."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 (glibc only: musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def pin_mmap_threshold() -> bool:
    """Keep glibc's mmap threshold at 4 MB for this process (as ``MALLOC_MMAP_THRESHOLD_=4194304`` would),
    so that freed large tensor blocks go back to the system at once. Left alone when the user set
    ``MALLOC_MMAP_THRESHOLD_`` (or ``DHRD_KEEP_MALLOC=1``), or off glibc. Returns whether it was set."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("DHRD_KEEP_MALLOC") == "1":
        return False
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1)


def cap_onednn_cache() -> bool:
    """Keep oneDNN's primitive cache (bf16 matmuls on a CPU) to ``ONEDNN_CACHE_CAPACITY`` primitives for this
    process, as ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` would. Its default, 1,024, holds a primitive (with its
    JIT-compiled kernels) for every shape met, and dynamic padding meets new ones with every batch length: 30
    SmolLM2 steps of varying lengths left 240 MB more of the heap in use, alive for the process, so a second
    training cell started on top of it (results/memory-smollm2-cpu.md). One training step reuses a few dozen
    shapes across its layers, which a smaller cache still keeps. oneDNN
    reads the setting when it makes its first primitive: before any, or it is left as it is; a value the user
    set is kept. Returns whether it was set."""
    if any(os.environ.get(f"{p}_PRIMITIVE_CACHE_CAPACITY") for p in ("ONEDNN", "DNNL")):
        return False
    os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(ONEDNN_CACHE_CAPACITY)
    return True


def bound_process_memory() -> None:
    """The process-wide settings every dhrd entry (the CLI, ``train()``, the training benchmark) runs with, before
    the first tensor: the fixed mmap threshold and the capped oneDNN cache (each leaves a value the user set)."""
    pin_mmap_threshold()
    cap_onednn_cache()


def release_memory() -> None:
    """Free what nothing refers to any more (reference cycles too) and give the allocator's free pages back."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# ------------------------------------------------------------------------------------- activation budget
def _text_config(model):
    config = getattr(model, "config", None)
    if config is None:
        return None
    return getattr(config, "text_config", None) or config.get_text_config()


def checkpointable_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The backbone's repeated blocks that transformers can recompute in the backward pass."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def layer_activation_bytes(config, rows: int, length: int, eager_attention: bool, element_size: int = 4) -> int:
    """What one decoder layer keeps for the backward pass of a (rows x length) batch under LoRA, estimated
    from the tensors autograd saved for SmolLM2-135M: per token, 13 hidden-wide vectors (norms, projections,
    residuals, LoRA's dropout copies), 5 intermediate-wide ones (gate, up, activation, their product, the
    down projection's dropout copy), and with eager attention a row of probabilities per head."""
    hidden = config.hidden_size
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    heads = getattr(config, "num_attention_heads", 1)
    per_token = 13 * hidden + 5 * intermediate + (heads * length if eager_attention else 0)
    return rows * length * per_token * element_size


class ActivationBudget:
    """Recompute just enough layers in the backward pass to keep a step's saved activations under ``gb``.

    Before each training forward pass ``apply(rows, length)`` switches transformers' per-layer activation
    checkpointing on for the first k layers, k the fewest that bring the estimate under the budget: a batch of
    short rows recomputes nothing, one of 8 x 512 tokens nearly every layer (about a third more compute on it).
    The recomputation replays the same dropout masks (torch restores the RNG state), so the gradients are those
    of the plain step."""

    def __init__(self, model: torch.nn.Module, gb: float):
        from torch.utils.checkpoint import checkpoint

        self.layers = checkpointable_layers(model)
        self.config = _text_config(model)
        self.budget = gb * GB
        self.enabled = bool(self.layers) and self.config is not None and gb > 0
        self.last = 0
        self.most = 0  # the most layers any batch recomputed
        if not self.enabled:
            return
        attention = getattr(self.config, "_attn_implementation", None) or "eager"
        self.eager = attention == "eager"
        for layer in self.layers:
            if getattr(layer, "_gradient_checkpointing_func", None) is None:
                layer._gradient_checkpointing_func = functools.partial(checkpoint, use_reentrant=False)

    def layers_to_recompute(self, rows: int, length: int) -> int:
        if not self.enabled:
            return 0
        per_layer = layer_activation_bytes(self.config, rows, length, self.eager)
        kept = int(self.budget // max(per_layer, 1))
        return max(0, len(self.layers) - kept)

    def apply(self, rows: int, length: int) -> int:
        """Set the layers' flags for the next forward pass; returns how many are recomputed."""
        if not self.enabled:
            return 0
        count = self.layers_to_recompute(rows, length)
        self.most = max(self.most, count)
        if count != self.last:
            for i, layer in enumerate(self.layers):
                layer.gradient_checkpointing = i < count
            self.last = count
        return count


def activation_budget_for(model: torch.nn.Module, gb: float | None, every_layer: bool) -> ActivationBudget | None:
    """The budget a training run applies: none without one, or when every layer is recomputed anyway
    (``--gradient-checkpointing``)."""
    if not gb or every_layer or math.isinf(gb):
        return None
    budget = ActivationBudget(model, gb)
    return budget if budget.enabled else None
