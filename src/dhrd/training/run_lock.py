"""One process trains in a run directory at a time.

A run directory is resumable: a second ``dhrd train`` (or ``train()``) with the same ``--output-dir`` continues from
its last checkpoint. Two at once would both write its checkpoints, ``metrics.json`` and model, each from its own
state, and leave a run that neither trained: two study queues reaching the same cell, or a user starting a run
again in another terminal. So ``train()`` holds an exclusive lock (``filelock``, an ``flock`` on a file in the
directory) for the whole run: a second process is refused at once, in one line, and the kernel lets the lock go when
its holder ends, however it ends (``kill -9`` too), so a killed run never leaves a stale lock behind. Under
``accelerate launch`` (several processes, one run) the main process (``RANK`` 0) holds it for all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import DHRDInputError

LOCK_FILE = ".dhrd-train.lock"
# the locks this process holds, by run directory: train() is re-entered for the same directory (``--alpha auto``
# trains its chosen setting with train()), which must not refuse itself
_held: dict[Path, FileLock] = {}


class RunInUse(DHRDInputError):
    """Another process is training in this run directory."""


@contextmanager
def run_lock(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``output_dir``'s training lock (created with the directory if need be) for the ``with`` block, or raise
    ``RunInUse`` at once if another process holds it."""
    if os.environ.get("RANK", "0") != "0":  # a launched process beside the main one, which holds it for the run
        yield
        return
    directory = Path(output_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    lock = _held.get(directory) or FileLock(directory / LOCK_FILE, thread_local=False)
    try:
        lock.acquire(timeout=0)  # counted: the same process entering again only adds one
    except Timeout:
        raise RunInUse(
            f"{output_dir}: another process is training in this run directory (it holds {directory / LOCK_FILE}); "
            "wait for it to end, or give another --output-dir"
        ) from None
    _held[directory] = lock
    try:
        yield
    finally:
        lock.release()
        if not lock.is_locked:
            _held.pop(directory, None)
