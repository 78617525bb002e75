"""Where a result came from, in one record that every run, cache, export and table writes under ``provenance``:

- ``versions``: dhrd, python, and those of torch, transformers, peft, datasets, onnx, onnxruntime and
  llama-cpp-python that are installed (read from the installed packages' metadata: nothing is imported);
- ``git_commit``: the commit of the dhrd source, where dhrd runs from a git checkout (``None`` from a wheel);
- ``machine``: the CPU, its cores, torch's threads, whether dhrd would train and score in bf16 on it
  (``runtime.bf16_supported``) and the GPU, if any;
- ``command``: the ``dhrd`` command line with every secret (a hub token, an API key) blanked out; ``None`` when
  the process is not the ``dhrd`` command (the Python API: its arguments are recorded beside the result).

This module imports nothing heavy at the top: ``dhrd --version`` and the CLI's start-up read ``dhrd_version``."""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
import time
import traceback
from collections.abc import Collection, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .errors import cache_root, redact, secrets

PACKAGE_DIR = Path(__file__).resolve().parent
# The packages whose versions change results, by their distribution names; absent ones are left out
PACKAGES = ("torch", "transformers", "peft", "datasets", "onnx", "onnxruntime", "onnxruntime-gpu", "llama-cpp-python")
PROVENANCE_KEYS = ("versions", "git_commit", "machine", "command")
SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # SHA-1, or SHA-256 in a repository that uses it


def dhrd_version() -> str:
    try:
        return version("dhrd")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    """dhrd, python, and each of ``PACKAGES`` that is installed."""
    found = {"dhrd": dhrd_version(), "python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


# -------------------------------------------------------------------------------------------- git commit
def _git_dir(root: Path) -> Path | None:
    """``root/.git``: a folder in a checkout, a ``gitdir: <path>`` file in a worktree or submodule."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():
        text = dot_git.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            return (root / text.removeprefix("gitdir:").strip()).resolve()
    return None


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    """The commit a ref names: its loose file (in the worktree's folder or the common one), else packed-refs."""
    common = git_dir
    if (git_dir / "commondir").is_file():  # a worktree keeps its HEAD; branches live in the main .git
        common = (git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for folder in (git_dir, common):
        loose = folder / ref
        if loose.is_file():
            value = loose.read_text(encoding="utf-8").strip()
            return value if SHA.fullmatch(value) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            value, _, name = line.partition(" ")
            if name == ref and SHA.fullmatch(value):
                return value
    return None


def git_commit(package_dir: Path = PACKAGE_DIR) -> str | None:
    """The commit checked out where dhrd runs from a source checkout (``<checkout>/src/dhrd``), read from the
    files under ``.git`` (no ``git`` process: this runs at the start of every command). ``None`` for an
    installed wheel: its folder is not ``src/dhrd``, so a virtual environment kept inside some checkout is
    never taken for dhrd's own. Uncommitted changes are not detected."""
    if package_dir.parent.name != "src":
        return None
    try:
        git_dir = _git_dir(package_dir.parent.parent)
        if git_dir is None or not (git_dir / "HEAD").is_file():
            return None
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if head.startswith("ref:"):
            return _resolve_ref(git_dir, head.removeprefix("ref:").strip())
        return head if SHA.fullmatch(head) else None  # a detached HEAD holds the commit itself
    except (OSError, UnicodeDecodeError):  # an unreadable or odd .git is no reason to fail a run
        return None


# ----------------------------------------------------------------------------------------------- machine
def machine() -> dict:
    """The CPU, its cores, torch's threads now, dhrd's bf16 decision and the GPU (``None`` without one)."""
    import torch  # here, not at the top: see the module's docstring

    from .runtime import bf16_supported

    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "bf16_supported": bf16_supported(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# ------------------------------------------------------------------------------------------ command line
def invoked_as_dhrd(program: str | None = None) -> bool:
    """Whether this process is the ``dhrd`` command (or ``python -m dhrd``), not Python code calling dhrd."""
    path = Path(sys.argv[0] if program is None else program)
    return path.name == "dhrd" or (path.name == "__main__.py" and path.parent.name == "dhrd")


def _portable_word(word: str) -> str:
    """A word with an absolute path (``/x/y``, ``--opt=/x/y``, ``~/y``) reduced to the path's last part."""
    name, equals, value = word.partition("=") if word.startswith("-") else ("", "", word)
    if value.startswith(("/", "~")) or re.match(r"[A-Za-z]:[\\/]", value):
        value = Path(value).name or value
    return f"{name}{equals}{value}"


def command_line(
    argv: Sequence[str] | None = None,
    drop: Collection[str] = (),
    portable: bool = False,
    program: Sequence[str] = ("dhrd",),
) -> str:
    """``dhrd <arguments>`` as a shell takes it (``argv``: default this process's), with the value of every
    secret option and secret environment variable (``errors.secrets``) replaced by ``<secret>``: the one way
    dhrd writes a command line into a file. ``drop`` leaves those words out (``--tables-only``: the command
    that made the cells); ``portable`` reduces absolute paths to their last part (a folder meant to be copied
    to other machines holds no path of this one); ``program`` is what runs the arguments (a script's
    ``("python", "scripts/x.py")``)."""
    words = list(sys.argv[1:] if argv is None else argv)
    hidden = secrets(words)
    # each word masked before quoting: quoting could split a secret that holds a quote
    words = [redact(word, hidden) for word in words if word not in drop]
    if portable:
        words = [_portable_word(word) for word in words]
    return shlex.join([*program, *words])


# ------------------------------------------------------------------------------------------------ record
def provenance(drop: Collection[str] = (), portable: bool = False) -> dict:
    """The record of ``PROVENANCE_KEYS`` that every run, cache, export and table writes under ``provenance``
    (see the module's docstring). ``drop`` and ``portable`` are ``command_line``'s."""
    return {
        "versions": package_versions(),
        "git_commit": git_commit(),
        "machine": machine(),
        "command": command_line(drop=drop, portable=portable) if invoked_as_dhrd() else None,
    }


def versions_text(record: dict) -> str:
    """``dhrd 0.1.0, python 3.12, torch 2.5`` for a table's footnote."""
    return ", ".join(f"{name} {value}" for name, value in record.get("versions", {}).items())


def machine_text(record: dict) -> str:
    """``<cpu> (<gpu or cpu>), N CPUs, T torch threads`` for a table's footnote."""
    m = record.get("machine", {})
    cores, threads = m.get("cpu_count"), m.get("torch_threads")
    return f"{m.get('cpu')} ({m.get('gpu') or 'cpu'}), {cores} CPUs, {threads} torch threads"


def save_traceback(error: BaseException) -> Path:
    """The command line and full traceback of an unexpected error, in ``<cache>/errors/<time>-<pid>.txt``, with
    every secret (a hub token, an API key) blanked out."""
    folder = cache_root() / "errors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    path.write_text(redact(f"$ {command_line()}\n\n{''.join(lines)}"), encoding="utf-8")
    return path
