"""One CoT setup for ``dhrd benchmark`` and ``dhrd reproduce``: a CoT system's decode settings and what it decodes
(its LM, tokenizer, queries and the gold label of every example). The two commands differ only in which
validation examples they pick and how they time the decodes; which method decodes which task is reproduce's
``METHOD_RULES`` (and ``Task.zero_shot_cot``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..data.examples import Example
from ..data.inputs import DataSpec, bare_numbers
from ..errors import DHRDInputError
from .baseline import (
    PAPER_SETTINGS,
    DecodeSettings,
    Query,
    finetuned_gold,
    finetuned_queries,
    fitted_max_new_tokens,
    greedy_settings,
    own_data_queries,
    zero_shot_queries,
)

FINETUNED, ZERO_SHOT = "cot", "cot-zero-shot"  # the CoT systems, as benchmark rows and reproduce methods name them


def decode_settings(
    names: Sequence[str], task: str, tokenizer, rationales: str | None, greedy_max_new_tokens: int | None = None
) -> list[DecodeSettings]:
    """The named settings, in the order ``paper``, ``greedy``: greedy's budget is ``greedy_max_new_tokens``,
    else fitted to the lengths of ``task``'s rationales (``fitted_max_new_tokens``)."""
    settings = [PAPER_SETTINGS] if "paper" in names else []
    if "greedy" in names:
        settings.append(greedy_settings(greedy_max_new_tokens or _fitted_budget(task, tokenizer, rationales)))
    return settings


def _fitted_budget(task: str, tokenizer, rationales: str | None) -> int:
    from ..data.rationales import rationale_file, read_rationales

    path = rationale_file(rationales, task)
    if path is None:
        raise DHRDInputError(
            f"no rationale cache for {task} to fit the greedy budget to: pass --rationales (or a greedy budget)"
        )
    return fitted_max_new_tokens(read_rationales(path).values(), tokenizer)


@dataclass
class CoTInputs:
    """What a CoT system decodes: its LM and tokenizer, one query per decode, the gold native label of every
    original example (in the order of the examples)."""

    system: str
    lm: Any
    tokenizer: Any
    queries: list[Query]
    gold: dict[str, str]

    @property
    def groups(self) -> list[str]:
        return list(self.gold)


def cot_inputs(
    system: str, task: str, model: str | None, data_dir: str | None, choose: Callable[[list[Example]], list[Example]]
) -> CoTInputs:
    """``system``'s LM (``model``: the CoT fine-tuned run, or the backbone, default the shared one) and its
    queries on the validation examples ``choose`` keeps of the task's rows (the fine-tuned model's classifier
    rows; the yes/no rows for zero-shot, whose prompts are per example: a task without a zero-shot prompt,
    ``Task.zero_shot_cot``, is refused)."""
    if system not in (FINETUNED, ZERO_SHOT):
        raise DHRDInputError(f"{system!r} is no CoT system: {FINETUNED} or {ZERO_SHOT}")
    if system == FINETUNED:
        from ..inference.evaluation import examples_for_model
        from ..modeling import reasoning_lm

        lm, classifier, tokenizer = reasoning_lm(model)
        labels = [classifier.config.id2label[i] for i in range(classifier.config.num_labels)]
        rows = choose(examples_for_model(classifier, task, "validation", data_dir)[0])
        queries, gold = finetuned_queries(rows, tokenizer, labels), finetuned_gold(rows, labels)
        return CoTInputs(system, lm, tokenizer, queries, gold)
    from ..data.task_splits import load_task_split
    from ..modeling import default_backbone, load_causal_lm

    lm, tokenizer = load_causal_lm(model or default_backbone())
    groups = list(dict.fromkeys(e.group for e in choose(load_task_split(task, "validation", "yesno", data_dir))))
    queries, gold = zero_shot_queries(task, tokenizer, data_dir, groups=groups)
    return CoTInputs(system, lm, tokenizer, queries, gold)


def zero_shot_labels(spec: DataSpec, where: str = "") -> tuple[str, ...]:
    """An own-data task's label names, which zero-shot CoT answers with: bare numbers are refused, as the
    teacher refuses them ("Answer: 1" names nothing the backbone can reason towards)."""
    labels = tuple(spec.label_names())
    if bare_numbers(labels):
        raise DHRDInputError(
            f"{where}zero-shot CoT answers with the label names, and these are bare numbers ({', '.join(labels)}): "
            "name them with label_map (--label-names 0=<name>,...) and say what is asked with instruction"
        )
    return labels


def own_data_inputs(spec: DataSpec, split: str, examples: Sequence[Example], model: str | None) -> CoTInputs:
    """Zero-shot CoT on the user's own rows: the backbone (``model``, default the shared one) prompted with
    ``examples`` (rows of ``spec``'s ``split``) as the teacher sees them (``prompts.file_items``: the texts under
    their column names, then the instruction), answering with the task's label names."""
    from ..modeling import default_backbone, load_causal_lm
    from ..teacher.prompts import file_items

    labels = zero_shot_labels(spec)
    items, _ = file_items(spec.rows_source(split), spec.columns, spec.encoding, spec.instruction, labels)
    lm, tokenizer = load_causal_lm(model or default_backbone())
    queries, gold = own_data_queries(examples, items, labels, tokenizer)
    return CoTInputs(ZERO_SHOT, lm, tokenizer, queries, gold)


__all__ = [
    "FINETUNED",
    "ZERO_SHOT",
    "CoTInputs",
    "cot_inputs",
    "decode_settings",
    "own_data_inputs",
    "zero_shot_labels",
]
