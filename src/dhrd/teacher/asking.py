"""A teacher asked for every example the cache does not have yet (``generate_rationales``): each answer checked
(``prompts.check_output``), the bad ones retried, dropped or kept as the policy says, and each final row appended
to the cache the moment it is known, so a killed run loses no answer."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..data.rationales import RationaleCache
from ..errors import DHRDInputError
from .backends import Generation, Request, Teacher
from .prompts import CHECKS, POLICIES, Checked, PromptTemplate, TeacherItem, check_output


@dataclass
class RunSummary:
    examples: int = 0
    already_cached: int = 0
    written: int = 0
    outcomes: Counter = field(default_factory=Counter)  # ok / kept / dropped
    problems: Counter = field(default_factory=Counter)  # each check that failed, on every attempt
    final_problems: Counter = field(default_factory=Counter)  # problems of the rows as written
    retries: int = 0
    teacher_answers: int = 0
    teacher_agrees: int = 0
    requests: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "examples": self.examples,
            "already_cached": self.already_cached,
            "written": self.written,
            "outcomes": dict(self.outcomes),
            "problems_seen": dict(self.problems),
            "problems_in_written_rows": dict(self.final_problems),
            "retries": self.retries,
            "teacher_answers": self.teacher_answers,
            "teacher_agreement": round(self.teacher_agrees / self.teacher_answers, 4) if self.teacher_answers else None,
            "requests": self.requests,
            "generated_tokens": self.generated_tokens,
            "seconds": round(self.seconds, 2),
            "rows_per_second": round(self.written / self.seconds, 3) if self.seconds else None,
            "generated_tokens_per_second": round(self.generated_tokens / self.seconds, 2) if self.seconds else None,
        }


def cache_row(
    item: TeacherItem, checked: Checked, generation: Generation | None, outcome: str, attempts: int, answers
) -> dict:
    said = checked.teacher_answer
    return {
        "idx": item.idx,
        "label": item.label,
        "rationale": checked.rationale if outcome != "dropped" else None,
        "teacher_label": answers.get(said, said) if isinstance(answers, dict) else said,
        "status": outcome,
        "problems": checked.problems,
        "attempts": attempts,
        "output": generation.text if generation else None,
    }


def generate_rationales(
    items: Sequence[TeacherItem],
    answers: Sequence[str],
    teacher: Teacher,
    template: PromptTemplate,
    cache: RationaleCache,
    policy: str = "retry",
    retries: int = 2,
    checks: Iterable[str] = CHECKS,
    temperature: float = 0.0,
    retry_temperature: float = 0.7,
    max_new_tokens: int = 160,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    summary: RunSummary | None = None,
) -> RunSummary:
    """Fill ``cache`` with a rationale row for every item it lacks. Rows are appended as they become final;
    bad answers are re-asked (sampled, ``retry_temperature``) up to ``retries`` times under ``retry``,
    dropped under ``drop``, kept with their problems listed under ``keep``. ``summary``, where given, is
    filled as rows are written, so that a caller interrupted mid-run still holds the counts so far."""
    if policy not in POLICIES:
        raise DHRDInputError(f"unknown policy {policy!r}: choose from {', '.join(POLICIES)}")
    checks = tuple(checks)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise DHRDInputError(f"unknown check {', '.join(unknown)}: choose from {', '.join(CHECKS)}")
    summary = summary if summary is not None else RunSummary()
    summary.examples = len(items)
    todo = [item for item in items if item.idx not in cache]
    summary.already_cached = len(items) - len(todo)
    if limit is not None:
        todo = todo[: max(0, limit - summary.already_cached)]
    requests = [Request(item, template.messages(item, answers)) for item in todo]
    start = time.perf_counter()
    # the bar counts the rows the cache held already, and its rate and estimate only the rows made now
    bar = tqdm(
        total=summary.already_cached + len(requests),
        initial=summary.already_cached,
        desc=f"rationales ({teacher.name})",
        unit="row",
        disable=not progress,
    )
    # the bar closes on an error too, so that the error's one line starts a line of its own
    with bar, cache:
        while requests:
            again = []
            attempt = requests[0].attempt  # every request of a round is on the same attempt
            temp = temperature if attempt == 0 else retry_temperature
            # a new seed per round, so that a second retry does not sample the first retry's answer again
            for request, generation in teacher.generate(requests, temp, max_new_tokens, seed + 1_000_003 * attempt):
                summary.requests += 1
                summary.generated_tokens += generation.completion_tokens
                checked = check_output(
                    generation.text, request.item, answers, template.sentinel, checks, generation.finish_reason
                )
                summary.problems.update(checked.problems)
                if checked.teacher_answer is not None and request.attempt == 0:
                    summary.teacher_answers += 1
                    summary.teacher_agrees += checked.teacher_answer == request.item.answer
                blocking = checked.problems
                if blocking and policy == "retry" and request.attempt < retries:
                    summary.retries += 1
                    again.append(Request(request.item, request.messages, request.attempt + 1))
                    continue
                if not blocking:
                    outcome = "ok"
                elif policy == "keep" and "empty" not in checked.problems:
                    outcome = "kept"
                else:
                    outcome = "dropped"
                cache.append(cache_row(request.item, checked, generation, outcome, request.attempt + 1, answers))
                summary.written += 1
                summary.outcomes[outcome] += 1
                summary.final_problems.update(checked.problems)
                summary.seconds = time.perf_counter() - start
                bar.update(1)
                bar.set_postfix(tok_s=f"{summary.generated_tokens / max(summary.seconds, 1e-9):.1f}", refresh=False)
            requests = again
    summary.seconds = time.perf_counter() - start
    return summary


class RationalesInterrupted(KeyboardInterrupt):
    """Ctrl-C during a teacher run: the cache keeps every row written, and ``summary`` (also written as
    ``train.summary.json``, marked ``interrupted``) counts them."""

    def __init__(self, path: Path, summary: dict):
        super().__init__()
        self.path, self.summary = path, summary
