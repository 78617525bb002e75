"""Helpers of the fault-injection suite (tests/test_faults.py): the real CLI in its own process group, killed
with SIGKILL at a seeded random moment; a scripted OpenAI-compatible server; a small tmpfs mount; checks that
a JSONL file has only whole rows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SENTINEL = "[END OF REASONING]"


# ------------------------------------------------------------------------------------------- processes
def cli_env(cache: Path) -> dict:
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", DHRD_CACHE=str(cache))
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.pop("DHRD_TRACEBACK", None)
    return env


def start(args: list, env: dict, cwd: Path, program: list | None = None) -> subprocess.Popen:
    """``python -m dhrd ARGS`` in a new session (its own process group: killed whole, and only it). Output goes
    to temporary files, not pipes, so a long run never blocks on a full pipe while it is polled."""
    stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        [*(program or [sys.executable, "-m", "dhrd"]), *[str(a) for a in args]],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    process.logs = (stdout, stderr)
    return process


def output_of(process: subprocess.Popen) -> tuple[str, str]:
    texts = []
    for handle in process.logs:
        handle.seek(0)
        texts.append(handle.read())
        handle.close()
    return texts[0], texts[1]


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run(args: list, env: dict, cwd: Path, timeout: float = 300, program: list | None = None) -> Finished:
    began = time.monotonic()
    process = start(args, env, cwd, program)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise
    return Finished(process.returncode, *output_of(process), time.monotonic() - began)


@dataclass
class Reference:
    """An unbroken run's timing, from launch: when its work became visible (``started``), when its output was
    complete (``completed``), and when the process ended (``total``)."""

    result: Finished
    started: float
    completed: float
    total: float

    @property
    def window(self) -> float:
        """The working time a kill is drawn from: from the first sign of work to the complete output."""
        return max(self.completed - self.started, 0.05)


def run_reference(
    args: list, env: dict, cwd: Path, working: Callable[[], bool], complete: Callable[[], bool], timeout: float = 300
) -> Reference:
    began = time.monotonic()
    process = start(args, env, cwd)
    started = completed = None
    while process.poll() is None:
        now = time.monotonic() - began
        if started is None and working():
            started = now
        if started is not None and completed is None and complete():
            completed = now
        time.sleep(0.02)
        if now > timeout:
            kill_group(process)
            raise TimeoutError(f"reference run took over {timeout} s: {args}")
    process.wait()
    total = time.monotonic() - began
    result = Finished(process.returncode, *output_of(process), total)
    started = total if started is None else started
    return Reference(result, started, total if completed is None else completed, total)


@dataclass
class Kill:
    delay: float  # seconds after the first sign of work (or after launch, without one)
    mid_run: bool  # the process was still running when SIGKILL reached it
    seen_work: bool
    returncode: int  # -9 when killed; the command's own exit code when it ended first
    stderr: str


def kill_at_random(
    args: list, env: dict, cwd: Path, working: Callable[[], bool], delay: float, wait_limit: float = 120
) -> Kill:
    """Start the command, wait for the first sign of work (``working()``), then ``delay`` seconds more, and
    SIGKILL its process group. A process that ended first is reported as not killed mid-run."""
    process = start(args, env, cwd)
    began = time.monotonic()
    seen = False
    while process.poll() is None and time.monotonic() - began < wait_limit:
        if working():
            seen = True
            break
        time.sleep(0.01)
    deadline = time.monotonic() + delay
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    mid_run = process.poll() is None
    kill_group(process)
    return Kill(delay, mid_run, seen, process.returncode, output_of(process)[1])


@dataclass
class Tally:
    """Counts for the closing summary line of one command."""

    name: str
    kills: int = 0
    mid_run: int = 0  # the process was still running when killed
    work_left: int = 0  # ... and its output was not complete yet
    reruns_finished: int = 0
    identical: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        note = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (
            f"faults: {self.name}: {self.kills} kills ({self.mid_run} mid-run: {self.work_left} before the output "
            f"was complete, {self.mid_run - self.work_left} after), {self.reruns_finished} reruns finished, "
            f"{self.identical} final states identical to the unbroken run{note}"
        )


# A kill at the one moment an atomic write is exposed: its temporary file is complete, not yet renamed.
# ``python -c DIE_INSIDE_ATOMIC_WRITE NAME N dhrd-args...`` runs the CLI and SIGKILLs itself on the N-th
# ``os.replace`` onto a file called NAME.
DIE_INSIDE_ATOMIC_WRITE = """
import os, signal, sys
target, nth = sys.argv[1], int(sys.argv[2])
real, seen = os.replace, [0]
def replace(src, dst, *args, **kwargs):
    if os.path.basename(str(dst)) == target:
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = replace
from dhrd.cli import main
sys.argv = ["dhrd", *sys.argv[3:]]
main()
"""


def stray_temp_files(directory: Path) -> list[str]:
    """Hidden ``.<name>.tmp`` files: what an atomic write leaves when killed before its rename (until the
    next write of the same target consumes it)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob(".*.tmp"))


# --------------------------------------------------------------------------------------------- checks
def whole_jsonl_rows(path: Path) -> list[dict]:
    """Every line of ``path`` is one JSON object and the file ends with a newline (no torn row)."""
    raw = path.read_bytes()
    assert not raw or raw.endswith(b"\n"), f"{path}: torn tail {raw[-80:]!r}"
    rows = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{path}: line {number} is not JSON: {line[:120]!r}") from None
        assert isinstance(rows[-1], dict), f"{path}: line {number} is not an object"
    return rows


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that say error (progress bars redraw with carriage returns)."""
    parts = [p for line in stderr.splitlines() for p in line.split("\r")]
    return [p.strip() for p in parts if "error" in p.lower() or "traceback" in p.lower()]


# ------------------------------------------------------------------------------------------------ tmpfs
@contextmanager
def small_tmpfs(size: str = "256k"):
    """A tmpfs of ``size`` mounted on a fresh directory; yields None where mounting is not allowed (with the
    reason in ``small_tmpfs.reason``); always unmounted afterwards."""
    where = Path(tempfile.mkdtemp(prefix="dhrd-full-disk-"))
    mount = shutil.which("mount")
    done = None
    if mount is None:
        small_tmpfs.reason = "no mount command"
    else:
        done = subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
        )
        small_tmpfs.reason = (done.stderr.strip().splitlines() or [f"mount exited with {done.returncode}"])[0]
    mounted = done is not None and done.returncode == 0
    try:
        yield where if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def remount(where: Path, size: str) -> bool:
    return subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], capture_output=True).returncode == 0


small_tmpfs.reason = ""


# ------------------------------------------------------------------------------------- scripted server
def completion(content: str) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17},
    }


def rationale_reply(body: dict, padding: int = 0) -> dict:
    """A good answer naming the example (its text, from the prompt) and the gold answer; ``padding`` adds that
    many characters of distinct words (to fill a small disk quickly)."""
    user = body["messages"][-1]["content"]
    answer = user.split("Answer: ", 1)[1].split("\n", 1)[0]
    text = user.split("Text: ", 1)[1].split("\n", 1)[0] if "Text: " in user else user[:40]
    extra = " ".join(f"w{k}" for k in range(padding // 5)) if padding else ""
    return completion(f"The text '{text}' shows it plainly. {extra} {SENTINEL}\nAnswer: {answer}")


@contextmanager
def teacher_server(delay: float = 0.0, padding: int = 0):
    """An OpenAI-compatible chat server on 127.0.0.1 answering every request after ``delay`` seconds."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(delay)
            data = json.dumps(rationale_reply(body, padding)).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client was killed while this request was in flight
                pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):  # a killed client's socket: not worth a traceback
            pass

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
