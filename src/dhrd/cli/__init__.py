"""The ``dhrd`` command: ``app`` (typer) and ``main``, its entry point (``dhrd = "dhrd.cli:main"``)."""

from .commands import app
from .entry_point import main

__all__ = ["app", "main"]
