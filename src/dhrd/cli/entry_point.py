"""``main``, the ``dhrd`` entry point (``dhrd = "dhrd.cli:main"``): the process set up (OpenMP, memory, message
handlers), the commands run, and every failure turned into one line on stderr with its exit code."""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings

import typer

from ..errors import DHRDInputError
from ..memory import bound_process_memory
from ..openmp import passive_openmp_wait
from ..provenance import save_traceback
from .commands import app
from .printing import console, error_line

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, UsageError


def _unexpected(error: Exception) -> str:
    """One line for a bug: the error's type and first line, and where its full traceback was saved."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    message = f"unexpected {type(error).__name__}" + (f": {first[:500]}" if first else "")
    try:
        return f"{message} (full traceback saved to {save_traceback(error)})"
    except Exception as failure:  # the cache is not writable: the innermost frame still says where it broke
        frames = traceback.extract_tb(error.__traceback__)
        at = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "unknown place"
        return f"{message} (raised at {at}; the traceback could not be saved: {failure})"


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is at each message, as logging's own last resort does: a
    stream bound once goes stale when a caller (a test runner, a notebook) swaps stderr and closes the old one."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler's constructor assigns it; the current stderr wins
        pass


class _MessageFormat(logging.Formatter):
    """dhrd's information as plain lines (``converting ... once``); its warnings and errors prefixed."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def show_messages() -> None:
    """Other libraries' warnings as ``LEVEL name: message``; dhrd's information (a one-time conversion, what a
    long step is doing) and warnings as plain lines. Handlers of our own, each once: pytest's (caplog) stay."""
    root = logging.getLogger()
    if not any(getattr(h, "dhrd", False) for h in root.handlers):
        libraries = _CurrentStderr()
        libraries.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        libraries.addFilter(lambda record: not record.name.startswith("dhrd"))
        libraries.dhrd = True
        ours = _CurrentStderr()
        ours.setFormatter(_MessageFormat())
        ours.addFilter(lambda record: record.name.startswith("dhrd"))
        ours.dhrd = True
        root.handlers += [libraries, ours]
    root.setLevel(logging.WARNING)
    logging.getLogger("dhrd").setLevel(logging.INFO)
    # peft reads the model's deprecated ``is_gradient_checkpointing`` on every LoRA wrap: a FutureWarning per run
    # that no dhrd call makes and no user can act on
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def main() -> None:
    """The ``dhrd`` entry point: every failure is one line on stderr. Bad input and bad options exit with 2,
    an interrupt with 130, a bug with 1 (its traceback saved to a file; ``DHRD_TRACEBACK=1`` raises it)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    bound_process_memory()  # freed tensors go back to the system at once, oneDNN keeps 128 kernels (dhrd.memory)
    passive_openmp_wait()  # torch's threads sleep instead of spinning between operations (dhrd.openmp)
    show_messages()
    try:
        code = app(standalone_mode=False)  # click returns its exceptions to us instead of printing them
    except BrokenPipeError:
        sys.exit(1)
    except UsageError as error:  # a bad, unknown or missing option or command
        if type(error).__name__ != "NoArgsIsHelpError":  # `dhrd` alone: the help is already printed
            hint = f" (see: {error.ctx.command_path} --help)" if error.ctx is not None else ""
            error_line(error.format_message() + hint)
        sys.exit(2)
    except ClickException as error:
        error_line(error.format_message())
        sys.exit(error.exit_code)
    except DHRDInputError as error:  # raised outside a command's command_work
        error_line(str(error))
        sys.exit(2)
    except typer.Exit as error:
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("interrupted")
        sys.exit(130)
    except Exception as error:
        if os.environ.get("DHRD_TRACEBACK") == "1":
            raise
        error_line(_unexpected(error))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
