"""A SuperGLUE record's fields as text: the paper's yes/no template, the field checks that name the bad row, and
each task's own text helpers (BoolQ's question mark, WiC's and WSC's marked words, MultiRC's nesting). Pure
functions of a record, shared by the task classes (``task_base``, ``boolq``, ``tasks``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import DHRDInputError, where
from .examples import Example

# The paper's single prompt (Appendix E.2); the training suffix "Reasoning: ... Final Answer: ..." is added
# by the DHRD data pipeline, never here.
YES_NO_TEMPLATE = "Passage:\n{passage}\nQuestion:\n{question}\nAnswer:\n{answer}\nIs the answer correct Yes or No?"

CB_RELATIONS = {
    "entailment": "The passage entails the hypothesis.",
    "contradiction": "The passage contradicts the hypothesis.",
    "neutral": "The passage neither entails nor contradicts the hypothesis.",
}
COPA_QUESTIONS = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}


# ------------------------------------------------------------------------------------- record helpers
def yes_no_text(passage: str, question: str, answer: str) -> str:
    return YES_NO_TEMPLATE.format(passage=passage.strip(), question=question.strip(), answer=answer.strip())


def require_fields(record: dict, fields: Iterable[str], source: str, row: int) -> None:
    for name in fields:
        value = record.get(name)
        if value is None:
            raise DHRDInputError(f"{where(source, row, name)}: missing")
        if isinstance(value, str) and not value.strip():
            raise DHRDInputError(f"{where(source, row, name)}: empty text")


def label_index(value, names: Sequence[str], source: str, row: int) -> int | None:
    if value is None:
        return None
    key = str(value).lower() if isinstance(value, bool) else str(value)
    if key not in names:
        raise DHRDInputError(f"{where(source, row, 'label')}: label {value!r} is not one of {', '.join(names)}")
    return names.index(key)


def filled_text(value, source: str, row: int, name: str) -> str:
    """A text field the teacher is shown, stripped; missing or blank is refused."""
    if not isinstance(value, str) or not value.strip():
        raise DHRDInputError(f"{where(source, row, name)}: {'missing' if value is None else 'empty text'}")
    return value.strip()


def record_text(record: dict, name: str, source: str, row: int) -> str:
    return filled_text(record.get(name), source, row, name)


def object_list(value, source: str, row: int, name: str) -> list[dict]:
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise DHRDInputError(f"{where(source, row, name)}: expected a non-empty list of objects")
    return value


def record_example(
    task: str, record: dict, row: int, text: str, label: int | None, suffix="", candidate=None
) -> Example:
    """A row of a record: its group is the record's, its rationale key the record's idx."""
    idx = record.get("idx", row - 1)
    group = f"{task}-{idx}"
    return Example(f"{group}{suffix}", task, text, label, group, candidate, idx)


def truth_label(gold) -> str:
    return "true" if gold else "false"


# ------------------------------------------------------------------------ each task's text, from its fields
def boolq_question(question: str) -> str:
    return question.strip().rstrip("?") + "?"


def nest_multirc(rows: list[dict]) -> list[dict]:
    """Rebuild the official passage/question/answer nesting of the hub's flat MultiRC rows."""
    passages: dict[int, dict] = {}
    for row in rows:
        ids = row["idx"]
        passage = passages.setdefault(
            ids["paragraph"], {"idx": ids["paragraph"], "passage": {"text": row["paragraph"], "questions": []}}
        )
        questions = passage["passage"]["questions"]
        if not questions or questions[-1]["idx"] != ids["question"]:
            questions.append({"question": row["question"], "idx": ids["question"], "answers": []})
        questions[-1]["answers"].append({"text": row["answer"], "idx": ids["answer"], "label": row["label"]})
    return list(passages.values())


def wic_sentences(record: dict) -> tuple[str, str]:
    """Both sentences, the target word marked ``*like this*`` where its offsets are given."""
    return tuple(
        mark_word(record[f"sentence{k}"], record[f"start{k}"], record[f"end{k}"])
        if f"start{k}" in record
        else record[f"sentence{k}"]
        for k in (1, 2)
    )


def mark_word(sentence: str, start: int, end: int) -> str:
    return f"{sentence[:start]}*{sentence[start:end]}*{sentence[end:]}"


def wsc_passage(record: dict) -> str:
    """The text with the pronoun marked ``*like this*``."""
    target = record["target"]
    words = record["text"].split(" ")
    index, span = target["span2_index"], target["span2_text"]
    if 0 <= index < len(words) and words[index].lower().startswith(span.split(" ")[0].lower()):
        words[index] = f"*{words[index]}*"
    return " ".join(words)
