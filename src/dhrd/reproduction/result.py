"""``ReproduceResult``: what ``dhrd reproduce`` gives back and its tables are written from (the settings, every
cell's result, the rationales, the summary, the provenance). Below the run (``runner``), the statistics
(``summary``) and the tables (``report``), which all use it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReproduceResult:
    arguments: dict
    cells: dict = field(default_factory=dict)  # name -> {"kind", "task", "method", "seed", "result"/"error"}
    rationales: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0
    provenance: dict = field(default_factory=dict)  # dhrd.provenance's record: versions, commit, machine, command
    finished: bool = False
