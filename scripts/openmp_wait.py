"""One training step of a small Llama (6 layers, hidden 576 as SmolLM2's, 8 x 128 tokens) under each OpenMP
setting, side by side in rounds, each in its own process (OpenMP reads its settings when torch loads):

    python scripts/openmp_wait.py --rounds 3 --out results/openmp-wait

Prints a table and writes OUT.json. Run it on a quiet machine and beside other work: the settings differ most
when the cores are busy (dhrd.openmp)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SETTINGS = {
    "2 threads, default wait": {"OMP_NUM_THREADS": "2"},
    "2 threads, passive wait": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}

STEP = """
import json, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=9,
                     num_key_value_heads=3, vocab_size=8192)
model = LlamaForCausalLM(config)
optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
tokens = torch.randint(0, 8192, (8, 128))
def step():
    model(input_ids=tokens, labels=tokens).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
step()
started, steps = time.perf_counter(), 4
for _ in range(steps):
    step()
print(json.dumps((time.perf_counter() - started) / steps))
"""


def seconds_per_step(env: dict[str, str]) -> float:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", STEP], env={**clean, **env}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):  # interleaved, so that a change of load falls on every setting
        for name, env in SETTINGS.items():
            times[name].append(seconds_per_step(env))
    load = os.getloadavg()[0]
    base = statistics.median(times["2 threads, default wait"])
    lines = [f"load average at the end: {load:.1f}", "", "| setting | s a step, each round | median | vs default |"]
    lines.append("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {median:.2f} | {base / median:.2f}x |")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"load_average": load, "seconds_per_step": times}, indent=1))


if __name__ == "__main__":
    main()
