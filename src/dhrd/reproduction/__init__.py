"""``dhrd reproduce`` and ``dhrd demo``: the paper's experiment as one resumable command.

A *cell* is one unit of work whose result is a file: a training run (task, method, seed), a CoT decode of
its validation examples, a teacher cache, the throughput benchmark of a task. Every cell is skipped when its
file exists (written atomically, and checked to hold the same settings), and a training cell killed mid-way
resumes from its last checkpoint, so the command can be killed at any moment and run again: only the
unfinished cells run. After every cell the tables are rewritten from whatever has finished:
``results.md``, ``results.json``, ``results.csv`` and ``results.png`` in ``results_dir``.

Methods (the paper's Tables 1 and 3):

* ``pooled``: the pooled classifier, alpha = 0 (the baseline);
* ``dhrd``: the pooled classifier trained with the reasoning head, ``beta * L_cls + alpha * L_reason``;
* ``dhrd-shuffled``: the same with another example's rationale (the paper's Table 2 ``shuffle_reasoning``);
* ``cot``: reasoning/CoT fine-tuned (alpha = 1, beta = 0), scored by decoding a rationale and parsing its answer;
* ``cot-zero-shot``: the untouched backbone prompted to reason (no training, so one cell per task).

Scores are the tasks' official metrics on the (capped) validation split, as mean ± std over seeds. A task may
also be your own data: a ``--tasks`` entry that is an own-data config (``own_data``), scored on its test file
where it has one.

The package only composes the library: ``arguments`` (settings, config files), ``paper`` (the paper's
reference numbers), ``own_data`` (own-data tasks), ``cells`` (each a thin call into the library), ``runner``
(the plan and the resumable run), ``summary`` (the statistics of the finished cells), ``report`` (Markdown,
CSV, PNG, JSON) and ``demo`` (the ``dhrd demo`` preset).
"""

import importlib

from .arguments import METHODS, ReproduceArguments, make_arguments, read_config
from .demo import DemoArguments, demo_arguments

# the rest on first use: `dhrd reproduce --help` reads the arguments without the modules that run the cells
_LAZY = {
    "PAPER_TABLE1": "paper",
    "paper_gains": "paper",
    "markdown": "report",
    "write_results": "report",
    "ReproduceResult": "result",
    "plan": "runner",
    "reproduce": "runner",
    "score_stats": "summary",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "METHODS",
    "DemoArguments",
    "PAPER_TABLE1",
    "ReproduceArguments",
    "ReproduceResult",
    "demo_arguments",
    "make_arguments",
    "markdown",
    "paper_gains",
    "plan",
    "read_config",
    "reproduce",
    "score_stats",
    "write_results",
]
