"""The methods ``dhrd reproduce`` compares, one row each: how a method trains (or that it does not), what it
needs and how it is scored. Code that differs by method asks the method's row (``METHOD_RULES[name]``) instead
of testing its name. Light: no torch, so that ``dhrd reproduce --help`` answers at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodRules:
    name: str
    title: str  # how the tables name it
    # ``dhrd train``'s --method for its training cells; None: never trained (decoded from the backbone)
    training_method: str | None
    # alpha fixed by the method (CoT fine-tuning is alpha 1, beta 0); None: the run's own --alpha and --beta
    alpha: float | None = None
    beta: float | None = None
    rationale_mode: str = "consistent"  # dhrd-shuffled pairs each row with another row's rationale
    keep_reasoning_head: bool = False  # saved beside the classifier, so CoT can decode with it
    # its own trained run is scored as a classifier (the CoT model is scored by decoding, not by its head)
    classifier: bool = False
    paired_with_pooled: bool = False  # compared with pooled seed by seed and example by example, with a CI
    # CoT decoding: "fine-tuned" decodes each seed's trained model; "zero-shot" prompts the backbone, once per
    # task (greedy decoding does not depend on the seed) and only where the task has a zero-shot prompt
    cot: str | None = None

    @property
    def trained(self) -> bool:
        return self.training_method is not None

    @property
    def needs_rationales(self) -> bool:
        """Its training cells read a rationale for each row (every method with a reasoning loss)."""
        return self.training_method == "dhrd"

    @property
    def scored_by(self) -> str:
        """The kind of cell whose result is the method's score: a classifier's training run, or the CoT decode."""
        return "train" if self.classifier else "cot"

    @property
    def one_cell_per_task(self) -> bool:
        """Whether it runs once per task rather than once per seed (its tables show no seed count)."""
        return self.cot == "zero-shot"

    def training_alpha(self, run_alpha: float | None) -> float | None:
        """The --alpha of its training cells: none for pooled, the method's own, else the run's."""
        if self.training_method != "dhrd":
            return None
        return self.alpha if self.alpha is not None else run_alpha

    def training_beta(self, run_beta: float) -> float:
        return self.beta if self.beta is not None else run_beta

    def skip_reason(self, task) -> str | None:
        """Why the method has no cells for ``task`` (its ``task_base.Task`` rules), which the tables state; None
        where it runs."""
        if self.cot == "zero-shot" and not task.zero_shot_cot:
            return "no zero-shot CoT prompt for this task"
        if self.cot == "fine-tuned" and task.own_data:
            return "CoT decoding reads SuperGLUE splits only: not built for own data"
        return None

    def decodes(self, zero_shot_prompt: bool, first_seed: bool) -> bool:
        """Whether a seed of a task has a CoT cell: ``zero_shot_prompt`` is the task's (``Task.zero_shot_cot``)."""
        if self.cot == "zero-shot":
            return zero_shot_prompt and first_seed
        return self.cot == "fine-tuned"


METHOD_RULES: dict[str, MethodRules] = {
    rules.name: rules
    for rules in (
        MethodRules("pooled", "Pooled baseline", "pooled", classifier=True),
        MethodRules("dhrd", "DHRD", "dhrd", classifier=True, paired_with_pooled=True),
        MethodRules(
            "dhrd-shuffled",
            "DHRD, shuffled rationales",
            "dhrd",
            rationale_mode="shuffle_reasoning",
            classifier=True,
            paired_with_pooled=True,
        ),
        MethodRules(
            "cot", "CoT fine-tuned (α=1, β=0)", "dhrd", alpha=1.0, beta=0.0, keep_reasoning_head=True, cot="fine-tuned"
        ),
        MethodRules("cot-zero-shot", "CoT zero-shot", None, cot="zero-shot"),
    )
}

METHODS = tuple(METHOD_RULES)
TRAINED_METHODS = tuple(name for name, rules in METHOD_RULES.items() if rules.trained)
PAIRED_METHODS = tuple(name for name, rules in METHOD_RULES.items() if rules.paired_with_pooled)
COT_METHODS = tuple(name for name, rules in METHOD_RULES.items() if rules.cot)
