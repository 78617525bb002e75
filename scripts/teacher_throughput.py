"""Teacher throughput on this machine: rows/s and generated tokens/s of `dhrd rationales` for the local
teacher (batch 1 vs a larger batch) and the server teacher (1 request in flight vs many, through llama.cpp's
`llama-server` with parallel slots), side by side in one run. Every configuration starts from an empty cache
and generates the first N training examples of the task; model loading and server start are not counted.

    python scripts/teacher_throughput.py --model smollm2=<gguf> --model qwen1.5b=<gguf> \
        --server-bin "$(bash scripts/build_llama_server.sh)" --out results/teacher-throughput-cpu
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from dhrd.runtime import write_json_atomic
from dhrd.teacher.teachers import make_rationales


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, binary: str, gguf: str, parallel: int, slot_ctx: int, threads: int):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        command = [binary, "-m", gguf, "--host", "127.0.0.1", "--port", str(self.port), "-np", str(parallel),
                   "-c", str(parallel * slot_ctx), "-t", str(threads), "--cache-prompt"]  # fmt: skip
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("llama-server did not become healthy in 300 s")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def measure(task: str, data_dir: str | None, n: int, max_new_tokens: int, **teacher) -> dict:
    with tempfile.TemporaryDirectory() as output:
        _, summary = make_rationales(
            task=task, data_dir=data_dir, output=output, limit=n, max_new_tokens=max_new_tokens, progress=False,
            policy="keep", **teacher,
        )  # fmt: skip
    keys = ("written", "seconds", "rows_per_second", "generated_tokens", "generated_tokens_per_second", "outcomes")
    return {k: summary[k] for k in keys} | {"problems": summary["problems_in_written_rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="name=path/to/model.gguf (repeatable)")
    parser.add_argument("--server-bin", required=True, help="llama-server binary (scripts/build_llama_server.sh)")
    parser.add_argument("--task", default="rte")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch", type=int, default=8, help="the local teacher's larger batch")
    parser.add_argument("--parallel", type=int, default=16, help="server slots and requests in flight")
    parser.add_argument("--n-small", type=int, default=6, help="examples for the batch-1 / 1-in-flight runs")
    parser.add_argument("--n-large", type=int, default=32, help="examples for the batched / parallel runs")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-local", default="", help="comma-separated model names without a local run")
    parser.add_argument("--out", default="results/teacher-throughput-cpu")
    options = parser.parse_args()
    results = []

    def record(row: dict) -> None:
        results.append(row)
        print(json.dumps(row), flush=True)
        write_json_atomic(Path(options.out).with_suffix(".json"), {"task": options.task, "runs": results})

    common = dict(task=options.task, data_dir=options.data_dir, max_new_tokens=options.max_new_tokens)
    for spec in options.model:
        name, gguf = spec.split("=", 1)
        server = LlamaServer(options.server_bin, gguf, options.parallel, 1024, options.threads)
        try:
            for in_flight, n in ((1, options.n_small), (options.parallel, options.n_large)):
                row = measure(n=n, teacher="teacher", base_url=server.url, concurrency=in_flight, **common)
                record({"model": name, "teacher": "server (llama-server)", "in_flight": in_flight, **row})
        finally:
            server.close()
        if name in options.skip_local.split(","):
            continue
        # two batches' worth: a local model decodes slowly, and more rows would not change the rate
        for batch, n in ((1, options.n_small), (options.batch, min(options.n_large, 2 * options.batch))):
            row = measure(n=n, teacher=gguf, batch_size=batch, **common)
            record({"model": name, "teacher": "local (transformers, bf16)", "in_flight": batch, **row})

    lines = [
        f"Task {options.task}, first N training examples, label-conditioned paper prompt, greedy, "
        f"max {options.max_new_tokens} new tokens, {options.threads} threads.",
        "",
        "| model | teacher | batch / requests in flight | examples | s | rows/s | generated tok/s | outcomes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['teacher']} | {r['in_flight']} | {r['written']} | {r['seconds']} "
            f"| {r['rows_per_second']} | {r['generated_tokens_per_second']} | {r['outcomes']} |"
        )
    Path(options.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
