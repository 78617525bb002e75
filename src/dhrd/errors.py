"""The one exception that the CLI turns into a one-line message and exit code 2, and where the CLI saves the
traceback of an unexpected error (this module imports nothing heavy: the CLI uses it before torch loads)."""

from __future__ import annotations

import os
import shlex
import sys
import time
import traceback
from pathlib import Path


class DHRDInputError(Exception):
    """Bad input from the user: a file, row, field, option or model that cannot be used as given."""


def where(path: object, row: int | None = None, field: str | None = None) -> str:
    """``file:row N field 'x'``: the location prefix every input error starts with."""
    parts = [str(path)]
    if row is not None:
        parts.append(f"row {row}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ": ".join(parts)


def cache_root() -> Path:
    """``$DHRD_CACHE``, else ``~/.cache/dhrd``: GGUF conversions and saved tracebacks."""
    return Path(os.environ.get("DHRD_CACHE", Path.home() / ".cache" / "dhrd"))


def save_traceback(error: BaseException) -> Path:
    """The command line and full traceback of an unexpected error, in ``<cache>/errors/<time>-<pid>.txt``."""
    folder = cache_root() / "errors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    path.write_text(f"$ dhrd {shlex.join(sys.argv[1:])}\n\n{''.join(lines)}", encoding="utf-8")
    return path
