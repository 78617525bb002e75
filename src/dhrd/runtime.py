"""Where and how to run: device, bf16 support, atomic writes."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
from pathlib import Path

import torch


def find_shared(relative: str | Path, env: str) -> Path | None:
    """``$<env>``, else ``shared/<relative>`` beside the working directory or this checkout (the layout of a
    clone with the team's ``shared/`` folder next to it)."""
    if os.environ.get(env):
        return Path(os.environ[env])
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents[:2], *here.parents[:4]]:
        candidate = base / "shared" / relative
        if candidate.exists():
            return candidate
    return None


def device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


# oneDNN's instruction sets below AVX512_CORE_BF16: capped at one of these (ONEDNN_MAX_CPU_ISA), oneDNN computes
# bf16 by conversion, slower than float32
_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def bf16_supported() -> bool:
    """bf16 autocast pays off on GPUs with bf16 and on CPUs with AVX512-BF16 or AMX (about 3x here), unless
    oneDNN is held below those instructions (``ONEDNN_MAX_CPU_ISA=AVX2``: how a bf16 machine is made to run as
    one without, to time the float32 path)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in _ISAS_WITHOUT_BF16:
        return False
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def autocast(enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device().type, dtype=torch.bfloat16)


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """A text handle on a temporary file beside ``path``, flushed, fsynced and renamed onto ``path`` when the
    block ends: readers never see half a file, and on any error (a full disk) the temporary file is removed
    and ``path`` keeps its earlier content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name per writer (process id and a token): two processes may write the same target (two study
    # queues keeping one study's cells), and with one shared name the first rename left the second nothing to
    # rename. A file left by a process killed mid-write is removed by the next successful write of the target.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _remove_abandoned_temporaries(path)


def _remove_abandoned_temporaries(path: Path) -> None:
    """The temporary files of ``path`` whose writing process is gone (killed before its rename)."""
    for stray in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = stray.name[len(path.name) + 2 : -len(".tmp")].split("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            stray.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@contextlib.contextmanager
def atomic_directory(target: str | Path, replace: bool = True):
    """A temporary directory beside ``target``, renamed onto it when the block ends: readers never see half a
    model. ``replace``: an existing ``target`` is replaced (moved aside whole, then dropped: a kill at any
    moment leaves one complete directory, the earlier one being restored by the next call); otherwise it is
    kept (another process wrote the same content first) and the temporary one is dropped. On any error the
    temporary directory goes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    earlier = target.with_name(f".{target.name}.old")
    _restore_earlier(target, earlier)
    tmp = _new_directory(target.parent, f".{target.name}.tmp-")
    try:
        yield tmp
        honour_umask(tmp)
        if replace and target.exists():
            os.replace(target, earlier)
            os.replace(tmp, target)
            shutil.rmtree(earlier)
            return
        try:
            os.replace(tmp, target)
        except OSError:
            if replace:
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _restore_earlier(target, earlier)
        raise


def _new_directory(parent: Path, prefix: str) -> Path:
    """A new empty directory ``<prefix><random>`` in ``parent``, made with the user's umask (0o777 less it), as
    any folder they make is: ``tempfile.mkdtemp``'s are 0o700, and a saved model renamed from one was unreadable
    to a team sharing the folder or to a serving container's user."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def honour_umask(root: Path) -> None:
    """Every folder and file under ``root`` given the mode the user's umask gives a new one (read from ``root``'s
    own, made by ``_new_directory``), executables keeping their execute bits: libraries write some files private
    (safetensors' weights 0o600), and the saved folder must be as readable as anything else the user writes."""
    folders = root.stat().st_mode & 0o777
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        executable = path.is_dir() or path.stat().st_mode & 0o100
        path.chmod(folders if executable else folders & 0o666)


def _restore_earlier(target: Path, earlier: Path) -> None:
    """The directory ``atomic_directory`` moved aside: back in place where nothing replaced it, else dropped."""
    if earlier.exists():
        if target.exists():
            shutil.rmtree(earlier)
        else:
            os.replace(earlier, target)


def write_json_atomic(path: str | Path, data) -> Path:
    """Write to a temporary file beside the target, then rename: readers never see half a file."""
    with atomic_file(path) as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return Path(path)


def write_jsonl_atomic(path: str | Path, rows) -> Path:
    with atomic_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """A text file (a markdown table, a CSV) written beside its target and renamed into place."""
    with atomic_file(path) as handle:
        handle.write(text)
    return Path(path)


def save_figure_atomic(fig, path: str | Path, dpi: int = 120) -> Path:
    """A matplotlib figure saved as a PNG beside its target, renamed into place, and closed."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# One colour per system in every figure (reproduce's "cot" is the benchmark's "cot-finetuned": one system).
PLOT_COLOURS = {
    "pooled": "tab:gray",
    "dhrd": "tab:blue",
    "dhrd-shuffled": "tab:cyan",
    "cot": "tab:red",
    "cot-finetuned": "tab:red",
    "cot-zero-shot": "tab:orange",
}


def plot_colour(system: str) -> str:
    """The matplotlib colour of a method or benchmarked system (any other: green)."""
    return PLOT_COLOURS.get(system, "tab:green")
