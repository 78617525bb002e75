"""How close a CPU's fp32 matrix products come to its peak at the shapes a SmolLM2-135M training step runs.

The training benchmark (``dhrd benchmark --train``) gives a step's useful FLOP/s against the 2048^3 GEMM peak; this
says where the rest goes. It times, at the given threads: the square GEMM (the peak), each projection of a decoder
layer forward and its input-gradient backward for a batch of ``--tokens`` tokens (LoRA's frozen weights need no
weight gradient), LoRA's rank-r projections, and the reasoning head's chunked loss (``dhrd.training.lm_loss``) at
several chunk sizes. Best of ``--repeats`` after a warm-up; run it on a quiet machine.

    python scripts/fp32_gemm_shapes.py --threads 2 --out results/fp32-gemm-shapes-cpu
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from dhrd.provenance import command_line
from dhrd.runtime import write_json_atomic, write_text_atomic

HIDDEN, INTERMEDIATE, KV, VOCAB = 576, 1536, 192, 49152  # SmolLM2-135M


def best_seconds(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def linear_rate(m: int, k: int, n: int, repeats: int) -> float:
    """GFLOP/s of ``F.linear`` of an (m, k) input with an (n, k) weight, as nn.Linear runs it."""
    x, w = torch.randn(m, k), torch.randn(n, k)
    return 2 * m * k * n / best_seconds(lambda: torch.nn.functional.linear(x, w), repeats) / 1e9


def shapes(tokens: int, rank: int) -> dict[str, tuple[int, int, int]]:
    t = tokens
    return {
        "square 2048 (peak)": (2048, 2048, 2048),
        "q, o forward": (t, HIDDEN, HIDDEN),
        "k, v forward": (t, HIDDEN, KV),
        "gate, up forward": (t, HIDDEN, INTERMEDIATE),
        "down forward": (t, INTERMEDIATE, HIDDEN),
        "q, o input gradient": (t, HIDDEN, HIDDEN),
        "k, v input gradient": (t, KV, HIDDEN),
        "gate, up input gradient": (t, INTERMEDIATE, HIDDEN),
        "down input gradient": (t, HIDDEN, INTERMEDIATE),
        f"LoRA A (rank {rank})": (t, HIDDEN, rank),
        f"LoRA B (rank {rank})": (t, rank, HIDDEN),
    }


def lm_loss_rates(targets: int, chunks: list[int], repeats: int) -> list[dict]:
    """The reasoning head's loss and its gradient for ``targets`` targets, by chunk size (targets a chunk)."""
    import dhrd.training.lm_loss as lm_loss

    states = torch.randn(targets, HIDDEN, requires_grad=True)
    weight, labels = torch.randn(VOCAB, HIDDEN) * 0.02, torch.randint(0, VOCAB, (targets,))
    saved, rows = lm_loss._CHUNK_ELEMENTS, []
    try:
        for chunk in chunks:
            lm_loss._CHUNK_ELEMENTS = chunk * VOCAB
            seconds = best_seconds(lambda: lm_loss.linear_cross_entropy_sum(states, weight, labels).backward(), repeats)
            gflops = 4 * targets * HIDDEN * VOCAB / seconds / 1e9
            rows.append(dict(chunk=chunk, seconds=round(seconds, 3), gflops=round(gflops, 1)))
    finally:
        lm_loss._CHUNK_ELEMENTS = saved
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--tokens", type=int, default=1600, help="tokens of a batch (8 rows of 200: a CB batch)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lm-targets", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", required=True, help="results path without suffix (.md and .json are written)")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    rows = [
        dict(shape=name, m=m, k=k, n=n, gflops=round(linear_rate(m, k, n, options.repeats), 1))
        for name, (m, k, n) in shapes(options.tokens, options.rank).items()
    ]
    peak = rows[0]["gflops"]
    for row in rows:
        row["of_peak"] = round(row["gflops"] / peak, 3)
    losses = lm_loss_rates(options.lm_targets, [64, 128, 256, 512], options.repeats)
    machine = dict(
        processor=platform.processor() or platform.machine(),
        threads=torch.get_num_threads(),
        capability=torch.backends.cpu.get_cpu_capability(),
        torch=torch.__version__,
    )
    command = command_line(program=("python", "scripts/fp32_gemm_shapes.py"))
    lines = [
        "# fp32 matrix products at SmolLM2-135M's training shapes",
        "",
        f"torch {machine['torch']}, CPU capability {machine['capability']}, {machine['threads']} threads; "
        f"a batch of {options.tokens} tokens. Best of {options.repeats} after a warm-up.",
        "",
        "| product | m x k x n | GFLOP/s | of the square GEMM |",
        "|---|---|---|---|",
        *(f"| {r['shape']} | {r['m']} x {r['k']} x {r['n']} | {r['gflops']:.1f} | {r['of_peak']:.0%} |" for r in rows),
        "",
        f"The reasoning head's chunked loss and its gradient, {options.lm_targets} targets, by chunk size "
        "(`dhrd.training.lm_loss` uses 128):",
        "",
        "| targets a chunk | seconds | GFLOP/s of its two products |",
        "|---|---|---|",
        *(f"| {r['chunk']} | {r['seconds']:.3f} | {r['gflops']:.1f} |" for r in losses),
        "",
        f"Command: `{command}`",
        "",
    ]
    out = Path(options.out)
    write_json_atomic(out.with_suffix(".json"), dict(machine=machine, products=rows, lm_loss=losses, command=command))
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
