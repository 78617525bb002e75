"""A real OpenAI-compatible server: llama-cpp-python's, serving the shared SmolLM2 GGUF on 127.0.0.1, writes
rationales for 20 CB examples through ``dhrd rationales``. SmolLM2-135M is too weak to be a good teacher,
so the test checks the plumbing (every row written once, outcomes counted, tokens measured), not quality.

Install the server with ``bash scripts/install_llama_cpp_server.sh`` (built with AMX off: a native build
crashes on this CPU); the test skips with that hint when it is missing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import SHARED_GGUF

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    pytest.importorskip(
        "llama_cpp.server.app",
        reason="llama-cpp-python[server] is not installed: run `bash scripts/install_llama_cpp_server.sh`",
    )
    if not SHARED_GGUF.is_file():
        pytest.skip(f"shared SmolLM2 GGUF not found at {SHARED_GGUF} (../shared is absent)")
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(SHARED_GGUF), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--verbose", "False"]  # fmt: skip
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                models = json.load(response)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"llama_cpp.server did not start in 120 s: {log.read_text()[-2000:]}")
    yield url, models["data"][0]["id"]
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_real_server_writes_rationales_for_20_cb_examples(llama_server, shared_superglue, tmp_path):
    url, model = llama_server
    output = tmp_path / "cache"
    command = [sys.executable, "-m", "dhrd", "rationales", "--task", "cb", "--data-dir", str(shared_superglue),
               "--teacher", model, "--base-url", url, "--concurrency", "2", "--limit", "20",
               "--max-new-tokens", "48", "--on-problem", "keep", "--output", str(output)]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200", "NO_PROXY": "127.0.0.1,localhost"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    path = output / "CB" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 20 and len({r["idx"] for r in rows}) == 20
    assert all(r["teacher"] == f"openai:{model}" and r["prompt_id"] == "paper-lc-v2" for r in rows)
    assert all(r["status"] in ("ok", "kept", "dropped") for r in rows)
    assert sum(bool(r["output"]) for r in rows) >= 18  # the server answered with text
    summary = json.loads((path.parent / "train.summary.json").read_text())
    assert summary["written"] == 20 and summary["requests"] == 20  # --on-problem keep: one request each
    # a text answer is at least one token, none more than the 48-token budget; the rate is tokens over seconds
    assert sum(bool(r["output"]) for r in rows) <= summary["generated_tokens"] <= 48 * 20
    rate = summary["generated_tokens"] / summary["seconds"]
    assert summary["generated_tokens_per_second"] == pytest.approx(rate, rel=0.01)
