"""``dhrd demo``: a preset of ``dhrd reproduce`` that fits a few minutes on a CPU (``DemoArguments``: what a user
may change of it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..options.cli_options import option
from .arguments import ReproduceArguments, make_arguments

# The demo's task and budget, from results/learning-budget-smollm2-cpu.md: of the budgets that fit 10 minutes on
# 2 cores with both methods, the one where the pooled SmolLM2-135M student came furthest above its task's
# majority floor (CB in its native format: one 3-way row per example, a fifth of the yes/no format's tokens;
# the whole training split, one epoch, LoRA at lr 1e-3). The table says whether it beat the floor this time.
DEMO = dict(
    tasks=["cb"],
    seeds=[1],
    methods=["pooled", "dhrd", "cot-zero-shot"],
    output_dir="runs/demo",
    epochs=1.0,
    learning_rate=1e-3,
    cot_eval_examples=24,
    cot_setting="greedy",
    qps_examples=8,
    qps_repeats=2,
    train={"input_format": "native", "best_epoch": False},
    title="dhrd demo",
)


def demo_arguments(**overrides) -> ReproduceArguments:
    """The README's main job: pooled vs DHRD on a small task with the shared SmolLM2 student and reference
    rationales, both evaluated on the whole validation split and benchmarked against zero-shot CoT decoding,
    in at most 10 minutes on 2 CPU cores (the CoT fine-tuned model, a third training run, is left to
    ``dhrd reproduce``)."""
    settings = {**DEMO, "train": dict(DEMO["train"])}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return make_arguments(None, **settings)


@dataclass
class DemoArguments:
    """What ``dhrd demo`` lets a user change; the rest is ``DEMO``."""

    task: str = option(
        DEMO["tasks"][0],
        "the small task (CB in its native 3-way format by default), or an own-data config as dhrd reproduce "
        "--tasks takes one (examples/own-data/comve.yaml)",
    )
    backbone: str | None = option(None, "the student [default: the shared SmolLM2-135M, else the hub's]")
    output_dir: str = option(DEMO["output_dir"], "where the runs and the tables go")
    max_train_examples: int | None = option(None, "cap of training examples [default: the whole training split]")
    max_eval_examples: int | None = option(None, "cap of validation examples [default: the whole validation split]")
    epochs: float = option(DEMO["epochs"], "training epochs")
    restart: bool = option(False, "run everything again instead of reusing finished runs", flag="--restart")

    def reproduce_arguments(self) -> ReproduceArguments:
        settings = asdict(self)
        return demo_arguments(tasks=[settings.pop("task")], **settings)
