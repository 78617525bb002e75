"""Where a result came from: the package versions and the machine, recorded beside every benchmark and
reproduce table so that a figure can be traced to what produced it."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


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


def versions() -> dict:
    """Versions and machine in one flat record (reproduce's tables)."""
    import torch  # here, not at the top: `dhrd --version` reads dhrd_version without loading torch
    import transformers

    return {
        "dhrd": dhrd_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_name(),
        "threads": torch.get_num_threads(),
    }


def machine(bf16: bool) -> dict:
    """The machine a timing was taken on, with the versions of what ran (the benchmarks' tables)."""
    import torch

    info = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": "bf16 autocast" if bf16 else "fp32",
        "python": platform.python_version(),
        "versions": {"dhrd": dhrd_version(), "torch": torch.__version__},
    }
    for package in ("transformers", "peft", "llama_cpp"):
        try:
            info["versions"][package] = __import__(package).__version__
        except ImportError:
            pass
    return info
