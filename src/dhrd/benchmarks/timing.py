"""The measuring instruments of the benchmarks: the machine's matmul peak, a classifier forward pass's FLOPs,
and a classifier timed over full passes (with each switch of its fast inference path)."""

from __future__ import annotations

import logging
import statistics
import time

import torch

from ..data.examples import Example
from ..inference.evaluation import predict_proba
from ..runtime import device
from ..stats import latency_percentiles

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ the machine
def gemm_peak(dtype: torch.dtype, n: int | None = None, repeats: int = 5) -> dict:
    """FLOP/s of the best of ``repeats`` n x n x n matmuls: the practical ceiling of this machine's
    matmul units (the classifier's forward pass is almost all matmuls)."""
    on_gpu = torch.cuda.is_available()
    n = n or (8192 if on_gpu else 2048)  # a matrix side, not an input length: big enough to reach the peak
    a = torch.randn(n, n, device=device()).to(dtype)
    b = torch.randn(n, n, device=device()).to(dtype)
    torch.matmul(a, b)  # warm-up: thread pool, kernels
    best = float("inf")
    for _ in range(repeats):
        if on_gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if on_gpu:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "tflops": round(2 * n**3 / best / 1e12, 4)}


def forward_flops(model, lengths: list[int]) -> float:
    """Useful FLOPs of a classifier forward pass over sequences of these (unpadded) lengths: 2 per weight
    per token (the embedding lookup is free, the LM head is never run) plus the attention scores and mix."""
    config = model.config.text_config
    embeddings = model.get_input_embeddings().weight.numel()
    weights = sum(p.numel() for p in model.parameters()) - embeddings
    layers, hidden = config.num_hidden_layers, config.hidden_size
    return float(sum(2 * weights * n + 4 * layers * hidden * n * n for n in lengths))


# ---------------------------------------------------------------------------------------- classifiers
def pass_stats(times: list[float], examples: int, rows: int) -> dict:
    best, median = min(times), statistics.median(times)
    return {
        "examples": examples,
        "rows": rows,
        "seconds_min": round(best, 4),
        "seconds_median": round(median, 4),
        "examples_per_s": significant(examples / best),
        "examples_per_s_median": significant(examples / median),
    }


def significant(rate: float, digits: int = 4) -> float:
    """A rate to ``digits`` significant figures: three decimals left CoT's 0.0355 examples/s at 0.036, 1.3% off."""
    return float(f"{rate:.{digits}g}")


def time_classifier(model, tokenizer, rows: list[Example], batch_size: int, repeats: int, **switches) -> dict:
    """Warm-up, then ``repeats`` passes; the latencies and probabilities of the last pass."""
    texts = [e.text for e in rows]
    predict_proba(model, tokenizer, texts[:batch_size], batch_size, progress=False, **switches)
    times, batches = [], []
    for _ in range(repeats):
        batches = []
        start = time.perf_counter()
        probs = predict_proba(model, tokenizer, texts, batch_size, progress=False, batch_seconds=batches, **switches)
        times.append(time.perf_counter() - start)
    latencies = [seconds for size, seconds in batches for _ in range(size)]
    result = pass_stats(times, len({e.group for e in rows}), len(rows))
    return {**result, **latency_percentiles(latencies), "probs": probs}


def fast_path_switches(
    model, tokenizer, rows: list[Example], batch_size: int, repeats: int, bf16: bool, compile_: bool
) -> list[dict]:
    """Each switch of the inference path turned off in turn (``torch.compile`` turned on), everything else at
    the default: examples/s and the ratio to the default path. The variants take turns, one pass each per
    round, so that a slow start or a drifting clock never favours the ones measured later."""
    default = "default (sorted, inference_mode, bf16)" if bf16 else "default (sorted, inference_mode)"
    variants = {default: {}, "no length sorting": {"sort_by_length": False}}
    variants["no_grad instead of inference_mode"] = {"inference_mode": False}
    if bf16:
        variants["fp32 (no bf16 autocast)"] = {"bf16": False}
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, switches in variants.items():
            switches = {"bf16": bf16, **switches}
            speeds[name].append(time_classifier(model, tokenizer, rows, batch_size, 1, **switches)["examples_per_s"])
    results = [
        {"variant": name, "examples_per_s": max(v), "examples_per_s_median": statistics.median(v)}
        for name, v in speeds.items()
    ]
    if compile_:
        results.append(_compiled_variant(model, tokenizer, rows, batch_size, repeats, bf16))
    base = results[0]["examples_per_s"]
    for result in results:
        result["ratio_to_default"] = round(result["examples_per_s"] / base, 3) if result["examples_per_s"] else None
    return results


def _compiled_variant(model, tokenizer, rows, batch_size, repeats, bf16) -> dict:
    name = "+ torch.compile (dynamic shapes)"
    start = time.perf_counter()
    try:
        compiled = torch.compile(model, dynamic=True)
        time_classifier(compiled, tokenizer, rows, batch_size, 1, bf16=bf16)  # compiles every shape it meets
    except Exception as error:  # no C++ compiler, an unsupported op: the switch is unavailable, not fatal
        logger.warning("torch.compile is unavailable here: %s", str(error).splitlines()[0])
        return {"variant": name, "examples_per_s": None, "error": str(error).splitlines()[0][:200]}
    compile_seconds = time.perf_counter() - start
    timed = time_classifier(compiled, tokenizer, rows, batch_size, repeats, bf16=bf16)
    return {
        "variant": name,
        "examples_per_s": timed["examples_per_s"],
        "examples_per_s_median": timed["examples_per_s_median"],
        "compile_and_first_pass_seconds": round(compile_seconds, 1),
    }
