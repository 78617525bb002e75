"""``dhrd demo``: a preset of ``dhrd reproduce`` that fits a few minutes on a CPU (``DemoArguments``: what a user
may change of it)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..errors import DHRDInputError
from ..options.cli_options import option
from .arguments import ReproduceArguments, make_arguments

# The demo's task and settings, from the DHRD-pays-off study (results/head-comve-1000-smollm2-cpu.md): where DHRD's
# effect was clearest, ComVE (which of two statements is against common sense) with its human explanations as
# rationales, 1,000 training rows, one epoch, LoRA at lr 1e-3 and the linear head: DHRD +5.6 points [+2.5, +8.7]
# over pooled with the same head, 3 paired seeds, scored on ComVE's test file. ComVE's rows are short (about 16
# tokens of text each), so both trainings and a zero-shot CoT baseline fit minutes on 2 cores.
COMVE = "comve"  # the demo's own task: ComVE from the shared data folder (comve_config)
DEMO = dict(
    tasks=[COMVE],
    seeds=[1],
    methods=["pooled", "dhrd", "cot-zero-shot"],
    output_dir="runs/demo",
    epochs=1.0,
    learning_rate=1e-3,
    max_train_examples=1000,
    cot_eval_examples=24,
    cot_setting="greedy",
    qps_examples=8,
    qps_repeats=2,
    train={"input_format": "native", "best_epoch": False, "head": "linear"},
    title="dhrd demo",
)
# ComVE as an own-data task, as examples/own-data/comve.yaml gives it (a test holds the two together); its files are
# found in the shared data folder (or $DHRD_COMVE_DIR)
COMVE_FILES = {"train_file": "train.jsonl", "validation_file": "validation.jsonl", "test_file": "test.jsonl"}
COMVE_SETTINGS = {
    "text_column": "statement_1",
    "text_pair_column": "statement_2",
    "label_column": "label",
    "id_column": "id",
    "rationale_column": "explanation",
    "instruction": "Which statement is against common sense, the first or the second?",
}


def comve_config(output_dir: str | Path) -> Path:
    """The demo's ComVE task as an own-data config in ``output_dir`` (what ``dhrd reproduce --tasks`` reads), its
    files named relative to the working directory where they can be (no machine's paths in the tables)."""
    from ..runtime import find_shared, write_text_atomic  # torch: not for the command line's help

    folder = find_shared(Path("data") / "comve", "DHRD_COMVE_DIR")
    if folder is None or not (folder / COMVE_FILES["train_file"]).is_file():
        raise DHRDInputError(
            "the demo's task, ComVE, was not found: put the shared folder (shared/data/comve) beside this checkout "
            "or set DHRD_COMVE_DIR, or run another task: dhrd demo --task cb"
        )
    files = {key: _relative(folder / name) for key, name in COMVE_FILES.items()}
    return write_text_atomic(
        Path(output_dir) / f"{COMVE}.yaml", yaml.safe_dump({**files, **COMVE_SETTINGS}, sort_keys=False)
    )


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def demo_arguments(**overrides) -> ReproduceArguments:
    """The README's main job: pooled vs DHRD on a small task with the shared SmolLM2 student and human
    explanations as rationales, both scored on the task's whole test file and benchmarked against zero-shot CoT
    decoding on the same backbone (the CoT fine-tuned model, a third training run, is left to ``dhrd
    reproduce``). ``comve`` among the tasks is the demo's ComVE config, written into the output folder."""
    settings = {**DEMO, "train": dict(DEMO["train"])}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    tasks = [settings["tasks"]] if isinstance(settings["tasks"], str) else list(settings["tasks"])
    if COMVE in tasks:
        config = str(comve_config(settings["output_dir"]))
        settings["tasks"] = [config if task == COMVE else task for task in tasks]
    return make_arguments(None, **settings)


@dataclass
class DemoArguments:
    """What ``dhrd demo`` lets a user change; the rest is ``DEMO``."""

    task: str = option(
        DEMO["tasks"][0],
        "the small task: comve (ComVE from the shared data folder, its human explanations as rationales), a "
        "SuperGLUE task (cb), or an own-data config as dhrd reproduce --tasks takes one",
    )
    backbone: str | None = option(None, "the student [default: the shared SmolLM2-135M, else the hub's]")
    output_dir: str = option(DEMO["output_dir"], "where the runs and the tables go")
    max_train_examples: int | None = option(DEMO["max_train_examples"], "cap of training examples")
    max_eval_examples: int | None = option(
        None, "cap of scored examples [default: all: ComVE's test file, a SuperGLUE task's validation split]"
    )
    epochs: float = option(DEMO["epochs"], "training epochs")
    restart: bool = option(False, "run everything again instead of reusing finished runs", flag="--restart")

    def reproduce_arguments(self) -> ReproduceArguments:
        settings = asdict(self)
        return demo_arguments(tasks=[settings.pop("task")], **settings)
