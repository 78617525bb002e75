"""The one exception that the CLI turns into a one-line message and exit code 2, and how secrets are kept out of
what dhrd writes (this module imports nothing heavy: the CLI uses it before torch loads; ``provenance.save_traceback``
saves an unexpected error's traceback)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

# An option whose value is a secret (--hub-token, --token, an --api-key), and an environment variable that holds
# one (HF_TOKEN, OPENAI_API_KEY): their values never reach a file dhrd writes
SECRET_NAME = re.compile(r"(token|key|secret|password)$", re.IGNORECASE)
SHORTEST_SECRET = 8  # shorter values of such variables (a flag, a path part) would blank out ordinary text


class DHRDInputError(Exception):
    """Bad input from the user: a file, row, field, option or model that cannot be used as given."""


def exit_on_input_error(main: Callable[[], object], program: str) -> None:
    """Run a script's ``main`` as the ``dhrd`` command runs its commands: bad input (``DHRDInputError``) is one
    line, ``program: message``, on standard error and exit code 2, never a traceback."""
    try:
        main()
    except DHRDInputError as error:
        print(f"{program}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def where(path: object, row: int | None = None, field: str | None = None) -> str:
    """``file:row N field 'x'``: the location prefix every input error starts with."""
    parts = [str(path)]
    if row is not None:
        parts.append(f"row {row}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ": ".join(parts)


def missing_file(path: object, what: str = "file") -> DHRDInputError:
    """The error for a path that should be a file: a directory is named as one, not as missing."""
    if Path(str(path)).is_dir():
        return DHRDInputError(f"{path}: a directory, not a {what}")
    return DHRDInputError(f"{path}: {what} not found")


def secrets(argv: list[str] | None = None, environ: dict | None = None) -> set[str]:
    """The secret values a process holds: those of secret options on its command line, and of secret
    environment variables (the teacher's key is read from one)."""
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    found = set()
    for k, word in enumerate(argv):
        name, equals, value = word.partition("=")
        value = value if equals else (argv[k + 1] if k + 1 < len(argv) else "")
        if name.startswith("-") and SECRET_NAME.search(name.lstrip("-")):
            found.add(value)
        elif name.startswith("-") and SECRET_NAME.search(name.lstrip("-").removesuffix("-env").removesuffix("_env")):
            found.add(environ.get(value, ""))  # --api-key-env NAME: the key is NAME's value
    found |= {value for name, value in environ.items() if SECRET_NAME.search(name)}
    return {value for value in found if len(value) >= SHORTEST_SECRET}


def redact(text: str, hidden: set[str] | None = None) -> str:
    """``text`` with every secret value (``secrets()``) replaced by ``<secret>``."""
    for value in sorted(secrets() if hidden is None else hidden, key=len, reverse=True):
        text = text.replace(value, "<secret>")
    return text


def cache_root() -> Path:
    """``$DHRD_CACHE``, else ``~/.cache/dhrd``: GGUF conversions and saved tracebacks."""
    return Path(os.environ.get("DHRD_CACHE", Path.home() / ".cache" / "dhrd"))
