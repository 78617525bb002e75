"""The seven SuperGLUE classification tasks: reading, input formats, label words and official metrics.

Each task is a ``Task`` in ``TASKS`` and holds its own rules: its labels and the teacher's answer words, how
a record becomes classifier rows and teacher items (its class), whether its yes/no rows are candidates to
choose among, whether it is scored per answer, and whether zero-shot CoT applies. Code that differs by task
asks the task rather than testing its name.

Two input formats:

* ``yesno`` (default, the paper's Appendix E.2): every task becomes one UnifiedQA-style question,
  "Passage / Question / Answer / Is the answer correct Yes or No?", with labels ``No``/``Yes``. Tasks with
  several candidates get one row per candidate: MultiRC one per answer, COPA one per choice and CB one per
  relation (entails / contradicts / neither). An example's prediction is the candidate with the highest
  P(Yes), so CB keeps its three official classes and its official macro-F1 under the Yes/No schema.
* ``native``: each task's own labels (CB's three classes, COPA's two choices, ...), one row per example
  (MultiRC: one per answer, as the official task scores answers).

Metrics are reported in percent, on the original examples, as SuperGLUE defines them; the task score
averages CB's F1/accuracy and MultiRC's F1a/EM, and the SuperGLUE average is the mean of the task scores.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.metrics import f1_score

from ..errors import DHRDInputError, where
from ..runtime import find_shared
from . import tables

logger = logging.getLogger(__name__)

YES_NO_LABELS = ("No", "Yes")
INPUT_FORMATS = ("yesno", "native")
SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "val": "val.jsonl", "test": "test.jsonl"}

# The paper's single prompt (Appendix E.2); the training suffix "Reasoning: ... Final Answer: ..." is added
# by the DHRD data pipeline, never here.
YES_NO_TEMPLATE = "Passage:\n{passage}\nQuestion:\n{question}\nAnswer:\n{answer}\nIs the answer correct Yes or No?"

CB_RELATIONS = {
    "entailment": "The passage entails the hypothesis.",
    "contradiction": "The passage contradicts the hypothesis.",
    "neutral": "The passage neither entails nor contradicts the hypothesis.",
}
COPA_QUESTIONS = {"cause": "What was the cause of this?", "effect": "What happened as a result?"}


@dataclass(frozen=True)
class Example:
    """One row the classifier sees. Rows that belong to one original example share ``group``."""

    id: str
    task: str
    text: str
    label: int | None  # index into the label names; None where the split has no labels (test)
    group: str
    candidate: str | None = None  # the choice / answer / relation a yes-no row asks about
    source_idx: int | None = None  # the record's ``idx`` (MultiRC: the answer's), the key rationales join on


@dataclass(frozen=True)
class TeacherItem:
    """One training example as the teacher sees it: its id (the cache key), gold label and prompt input."""

    idx: int | str  # a SuperGLUE record's idx, a user id (--id-column) or a 1-based row number
    label: str  # the native label name ("entailment", "true", "choice2", or a user file's label)
    answer: str  # the label as the teacher writes it ("Yes", "Entailment", "Option 2", ...)
    input: str
    fields: dict = field(default_factory=dict)  # the record's text fields, for custom templates


# ------------------------------------------------------------------------------------------ task rules
@dataclass(frozen=True)
class Task:
    """A SuperGLUE task and its rules. Code that differs by task asks the task (these flags, or the methods
    its class overrides: how a record becomes classifier rows and teacher items) instead of testing its name.
    The default methods fit a task with one yes/no question per record."""

    name: str
    folder: str
    native_labels: tuple[str, ...]
    metrics: tuple[str, ...]  # the official metrics; their mean is the task score
    # the words the teacher and zero-shot CoT answer with and the native label each means, in the prompt's
    # order (a plain dict: the teacher's cache rows map a word back through it)
    answers: dict[str, str] = field(compare=False)
    # yes/no format: one row per candidate (CB's relations, COPA's choices) and an example's prediction is
    # the candidate with the highest P(Yes), so its metrics and constant predictors are per candidate
    candidate_rows: bool = False
    # the rows are candidate answers scored one by one (MultiRC: F1a over answers, EM over questions): no one
    # label per example, and the teacher is asked about each answer
    per_answer: bool = False
    # zero-shot CoT asks one question per example and reads one label back (none for a per-answer task)
    zero_shot_cot: bool = True
    # the user's own rows (``OWN_DATA``): labels of their own, rows keyed by an id column or their number
    own_data: bool = False

    required: ClassVar[tuple[str, ...]] = ()  # the record fields every row needs

    @property
    def hub_config(self) -> str:
        return self.name

    def label_names(self, input_format: str) -> tuple[str, ...]:
        return YES_NO_LABELS if input_format == "yesno" else self.native_labels

    def answer_word(self, label: str) -> str:
        """The word the teacher writes for a native label (RTE: "entailment" -> "Yes")."""
        return next(word for word, meant in self.answers.items() if meant == label)

    # classifier rows
    def examples(self, record: dict, input_format: str, source: str, row: int) -> list[Example]:
        """One record's classifier rows: here one row, the yes/no question or the task's native text."""
        self.check(record, source, row)
        gold = record.get("label")
        if input_format == "yesno":
            return [_example(self.name, record, row, _yes_no(*self.yes_no_parts(record), "Yes"), self.yes_label(gold))]
        text = self.native_text(record)
        return [_example(self.name, record, row, text, _label_index(gold, self.native_labels, source, row))]

    def check(self, record: dict, source: str, row: int) -> None:
        _require(record, self.required, source, row)

    def yes_no_parts(self, record: dict) -> tuple[str, str]:
        """The passage and question of the yes/no row (its answer is "Yes")."""
        raise NotImplementedError

    def native_text(self, record: dict) -> str:
        raise NotImplementedError

    def yes_label(self, gold) -> int | None:
        """The yes/no row's label (1: Yes) from the record's official label."""
        return None if gold is None else int(bool(gold))

    # teacher items
    def teacher_items(self, record: dict, source: str, row: int) -> list[TeacherItem]:
        """The teacher's view of one labelled record: here one item, keyed by the record's idx."""
        gold = record.get("label")
        if gold is None:
            raise DHRDInputError(f"{where(source, row, 'label')}: missing (the teacher needs labelled examples)")
        label, block, fields = self.teacher_view(record, gold, source, row)
        if label not in self.native_labels:
            raise DHRDInputError(f"{where(source, row, 'label')}: label {gold!r} is not one of the task's")
        return [TeacherItem(int(record.get("idx", row - 1)), label, self.answer_word(label), block, fields)]

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        """The native label, the prompt block and the text fields (for custom templates) of a record."""
        raise NotImplementedError

    # hub rows
    def from_hub(self, rows: list[dict]) -> list[dict]:
        """Hub rows in the official jsonl schema."""
        return [self.hub_row(row) for row in rows]

    def hub_row(self, row: dict) -> dict:
        """The hub stores labels as class ints (-1: unlabelled); the jsonl as the official values."""
        if isinstance(row.get("label"), int):
            row["label"] = self.official_label(row["label"]) if row["label"] >= 0 else None
        return row

    def official_label(self, index: int):
        return self.native_labels[index]

    def not_comparable(self, data_dir: str | Path | None = None) -> str | None:
        """Why this task's scores with ``data_dir`` cannot be set beside the paper's, if they cannot."""
        return None

    # metrics
    def official_metrics(self, examples: Sequence[Example], probs: np.ndarray, input_format: str) -> dict:
        """The official metrics, in percent, on the original examples (unordered, no task score)."""
        if self.candidate_rows and input_format == "yesno":
            predicted, gold = choice_predictions(examples, probs)
            result = {"accuracy": _percent(np.mean([p == g for p, g in zip(predicted, gold)]))}
            if "f1" in self.metrics:
                labels = list(self.native_labels)
                result["f1"] = _percent(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0))
            return result
        labels, row_pred = np.array([e.label for e in examples]), probs.argmax(-1)
        if self.per_answer:
            correct = row_pred == labels
            em = np.mean([correct[rows].all() for rows in example_groups(examples).values()])
            return {"f1a": _percent(f1_score(labels, row_pred, pos_label=1, zero_division=0)), "em": _percent(em)}
        result = {"accuracy": _percent(np.mean(row_pred == labels))}
        if "f1" in self.metrics:
            classes = list(range(len(self.native_labels)))
            result["f1"] = _percent(f1_score(labels, row_pred, labels=classes, average="macro", zero_division=0))
        return result


# ------------------------------------------------------------------------------------- record helpers
def _yes_no(passage: str, question: str, answer: str) -> str:
    return YES_NO_TEMPLATE.format(passage=passage.strip(), question=question.strip(), answer=answer.strip())


def _require(record: dict, fields: Iterable[str], source: str, row: int) -> None:
    for name in fields:
        value = record.get(name)
        if value is None:
            raise DHRDInputError(f"{where(source, row, name)}: missing")
        if isinstance(value, str) and not value.strip():
            raise DHRDInputError(f"{where(source, row, name)}: empty text")


def _label_index(value, names: Sequence[str], source: str, row: int) -> int | None:
    if value is None:
        return None
    key = str(value).lower() if isinstance(value, bool) else str(value)
    if key not in names:
        raise DHRDInputError(f"{where(source, row, 'label')}: label {value!r} is not one of {', '.join(names)}")
    return names.index(key)


def _filled(value, source: str, row: int, name: str) -> str:
    """A text field the teacher is shown, stripped; missing or blank is refused."""
    if not isinstance(value, str) or not value.strip():
        raise DHRDInputError(f"{where(source, row, name)}: {'missing' if value is None else 'empty text'}")
    return value.strip()


def _text(record: dict, name: str, source: str, row: int) -> str:
    return _filled(record.get(name), source, row, name)


def _objects(value, source: str, row: int, name: str) -> list[dict]:
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise DHRDInputError(f"{where(source, row, name)}: expected a non-empty list of objects")
    return value


def _example(task: str, record: dict, row: int, text: str, label: int | None, suffix="", candidate=None) -> Example:
    """A row of a record: its group is the record's, its rationale key the record's idx."""
    idx = record.get("idx", row - 1)
    group = f"{task}-{idx}"
    return Example(f"{group}{suffix}", task, text, label, group, candidate, idx)


def _truth(gold) -> str:
    return "true" if gold else "false"


# ------------------------------------------------------------------------------------------- the tasks
class _TrueFalse(Task):
    """A task whose official labels are booleans."""

    def official_label(self, index: int):
        return bool(index)


class BoolQ(_TrueFalse):
    required = ("question", "passage")

    def not_comparable(self, data_dir: str | Path | None = None) -> str | None:
        return BOOLQ_CARVE_NOTE if boolq_carved(data_dir) else None

    def yes_no_parts(self, record: dict) -> tuple[str, str]:
        return record["passage"], _boolq_question(record["question"])

    def native_text(self, record: dict) -> str:
        return f"Passage: {record['passage'].strip()}\nQuestion: {_boolq_question(record['question'])}"

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        fields = {
            "passage": _text(record, "passage", source, row),
            "question": _boolq_question(_text(record, "question", source, row)),
        }
        return _truth(gold), f"Passage: {fields['passage']}\nQuestion: {fields['question']}", fields


def _boolq_question(question: str) -> str:
    return question.strip().rstrip("?") + "?"


class _PremiseHypothesis(Task):
    """CB and RTE: a premise and a hypothesis, labelled with the relation's name."""

    required = ("premise", "hypothesis")
    teacher_question: ClassVar[str] = ""

    def check(self, record: dict, source: str, row: int) -> None:
        super().check(record, source, row)
        gold = record.get("label")
        if gold is not None and gold not in self.native_labels:
            raise DHRDInputError(
                f"{where(source, row, 'label')}: label {gold!r} is not one of {', '.join(self.native_labels)}"
            )

    def native_text(self, record: dict) -> str:
        return f"Premise: {record['premise'].strip()}\nHypothesis: {record['hypothesis'].strip()}"

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        fields = {
            "premise": _text(record, "premise", source, row),
            "hypothesis": _text(record, "hypothesis", source, row),
        }
        block = f"Premise: {fields['premise']}\nHypothesis: {fields['hypothesis']}\nQuestion: {self.teacher_question}"
        return gold, block, fields


class RTE(_PremiseHypothesis):
    teacher_question = "Does the premise entail the hypothesis?"

    def yes_no_parts(self, record: dict) -> tuple[str, str]:
        return record["premise"], f'Is the hypothesis "{record["hypothesis"].strip()}" entailed by the passage?'

    def yes_label(self, gold) -> int | None:
        return None if gold is None else int(gold == "entailment")


class CB(_PremiseHypothesis):
    teacher_question = "Does the premise entail the hypothesis, contradict it, or neither?"

    def examples(self, record: dict, input_format: str, source: str, row: int) -> list[Example]:
        """Yes/no: one row per relation, each asking whether the passage bears it to the hypothesis."""
        if input_format == "native":
            return super().examples(record, input_format, source, row)
        self.check(record, source, row)
        gold = record.get("label")
        question = f'What is the relation between the passage and the hypothesis "{record["hypothesis"].strip()}"?'
        return [
            _example(
                self.name,
                record,
                row,
                _yes_no(record["premise"], question, answer),
                None if gold is None else int(gold == relation),
                f"#{relation}",
                relation,
            )
            for relation, answer in CB_RELATIONS.items()
        ]


class COPA(Task):
    required = ("premise", "choice1", "choice2", "question")

    def check(self, record: dict, source: str, row: int) -> None:
        super().check(record, source, row)
        if record["question"] not in COPA_QUESTIONS:
            raise DHRDInputError(f"{where(source, row, 'question')}: expected 'cause' or 'effect'")

    def examples(self, record: dict, input_format: str, source: str, row: int) -> list[Example]:
        """Native: one row showing both choices. Yes/no: one row per choice, asking whether it is the answer."""
        self.check(record, source, row)
        gold = record.get("label")
        question = COPA_QUESTIONS[record["question"]]
        if input_format == "native":
            text = (
                f"Premise: {record['premise'].strip()}\nQuestion: {question}\n"
                f"Choice 1: {record['choice1'].strip()}\nChoice 2: {record['choice2'].strip()}"
            )
            label = None if gold is None else _label_index(f"choice{int(gold) + 1}", self.native_labels, source, row)
            return [_example(self.name, record, row, text, label)]
        return [
            _example(
                self.name,
                record,
                row,
                _yes_no(record["premise"], question, record[choice]),
                None if gold is None else int(int(gold) == k),
                f"#{choice}",
                choice,
            )
            for k, choice in enumerate(self.native_labels)
        ]

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        fields = {name: _text(record, name, source, row) for name in ("premise", "choice1", "choice2")}
        question = COPA_QUESTIONS.get(record.get("question"))
        if question is None:
            raise DHRDInputError(f"{where(source, row, 'question')}: expected 'cause' or 'effect'")
        block = (
            f"Premise: {fields['premise']}\nQuestion: {question}\n"
            f"Option 1: {fields['choice1']}\nOption 2: {fields['choice2']}"
        )
        return f"choice{int(gold) + 1}", block, fields

    def hub_row(self, row: dict) -> dict:
        return row  # the hub's choice index is the official label


class MultiRC(Task):
    """Records are passages with several questions, each with several candidate answers: one row per answer,
    the answers of one question grouped (EM is over questions)."""

    def examples(self, record: dict, input_format: str, source: str, row: int) -> list[Example]:
        passage = record.get("passage") or {}
        _require(passage, ["text", "questions"], source, row)
        group = f"{self.name}-{record.get('idx', row - 1)}"
        rows = []
        for question in passage["questions"]:
            qgroup = f"{group}-{question['idx']}"
            for answer in question["answers"]:
                flag = answer.get("label")
                if input_format == "yesno":
                    text = _yes_no(passage["text"], question["question"], answer["text"])
                else:
                    text = (
                        f"Paragraph: {passage['text'].strip()}\nQuestion: {question['question'].strip()}\n"
                        f"Answer: {answer['text'].strip()}"
                    )
                # an answer's idx is unique in its split: the key of its per-answer rationale
                label = None if flag is None else int(bool(flag))
                rows.append(
                    Example(f"{qgroup}-{answer['idx']}", self.name, text, label, qgroup, answer["text"], answer["idx"])
                )
        return rows

    def teacher_items(self, record: dict, source: str, row: int) -> list[TeacherItem]:
        """One item per candidate answer, keyed by the answer's idx, which is unique in its split and is the
        classifier row's ``source_idx``."""
        passage = record.get("passage")
        if not isinstance(passage, dict):
            raise DHRDInputError(f"{where(source, row, 'passage')}: expected an object with text and questions")
        paragraph = _filled(passage.get("text"), source, row, "passage.text")
        items = []
        for q, question in enumerate(_objects(passage.get("questions"), source, row, "passage.questions")):
            at = f"passage.questions[{q}]"
            asked = _filled(question.get("question"), source, row, f"{at}.question")
            for a, answer in enumerate(_objects(question.get("answers"), source, row, f"{at}.answers")):
                items.append(self.answer_item(paragraph, asked, answer, source, row, f"{at}.answers[{a}]"))
        return items

    def answer_item(self, paragraph: str, question: str, answer: dict, source: str, row: int, at: str) -> TeacherItem:
        idx, gold = answer.get("idx"), answer.get("label")
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise DHRDInputError(f"{where(source, row, at + '.idx')}: expected an integer id")
        if gold is None:
            raise DHRDInputError(f"{where(source, row, at + '.label')}: missing (the teacher needs labelled examples)")
        if gold not in (0, 1):  # the official 0/1; True/False compare equal and pass too
            raise DHRDInputError(f"{where(source, row, at + '.label')}: {gold!r} is not 0 or 1")
        candidate = answer.get("text")
        if not isinstance(candidate, str):  # empty is allowed: the official train split has 3 empty (false) answers
            raise DHRDInputError(
                f"{where(source, row, at + '.text')}: {'missing' if candidate is None else 'not text'}"
            )
        fields = {"paragraph": paragraph, "question": question, "candidate": candidate.strip()}
        block = (
            f"Paragraph: {paragraph}\nQuestion: {question}\nCandidate answer: {fields['candidate']}\n"
            "Question: Is the candidate answer correct?"
        )
        label = _truth(gold)
        return TeacherItem(idx, label, self.answer_word(label), block, fields)

    def from_hub(self, rows: list[dict]) -> list[dict]:
        """The hub flattens MultiRC to one row per answer; the official jsonl nests answers in questions in
        passages."""
        return _nest_multirc([self.hub_row(row) for row in rows])

    def official_label(self, index: int):
        return index  # the official answer labels are 0/1


def _nest_multirc(rows: list[dict]) -> list[dict]:
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


class WiC(_TrueFalse):
    required = ("word", "sentence1", "sentence2")

    def yes_no_parts(self, record: dict) -> tuple[str, str]:
        s1, s2 = _wic_sentences(record)
        question = f'Does the word "{record["word"]}" have the same meaning in both sentences?'
        return f"Sentence 1: {s1}\nSentence 2: {s2}", question

    def native_text(self, record: dict) -> str:
        s1, s2 = _wic_sentences(record)
        return f"Word: {record['word']}\nSentence 1: {s1}\nSentence 2: {s2}"

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        fields = {name: _text(record, name, source, row) for name in ("word", "sentence1", "sentence2")}
        block = (
            f"Word: {fields['word']}\nSentence 1: {fields['sentence1']}\nSentence 2: {fields['sentence2']}\n"
            f'Question: Does the word "{fields["word"]}" have the same meaning in both sentences?'
        )
        return _truth(gold), block, fields


def _wic_sentences(record: dict) -> tuple[str, str]:
    """Both sentences, the target word marked ``*like this*`` where its offsets are given."""
    return tuple(
        _mark_word(record[f"sentence{k}"], record[f"start{k}"], record[f"end{k}"])
        if f"start{k}" in record
        else record[f"sentence{k}"]
        for k in (1, 2)
    )


def _mark_word(sentence: str, start: int, end: int) -> str:
    return f"{sentence[:start]}*{sentence[start:end]}*{sentence[end:]}"


class WSC(_TrueFalse):
    required = ("text", "target")

    def yes_no_parts(self, record: dict) -> tuple[str, str]:
        target = record["target"]
        return _wsc_passage(record), f'Does the pronoun "{target["span2_text"]}" refer to "{target["span1_text"]}"?'

    def native_text(self, record: dict) -> str:
        target = record["target"]
        return f"Sentence: {_wsc_passage(record)}\nPronoun: {target['span2_text']}\nCandidate: {target['span1_text']}"

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        target = record.get("target") or {}
        fields = {
            "text": _text(record, "text", source, row),
            "pronoun": target.get("span2_text", ""),
            "noun": target.get("span1_text", ""),
        }
        if not fields["pronoun"] or not fields["noun"]:
            raise DHRDInputError(f"{where(source, row, 'target')}: missing span texts")
        block = (
            f'Sentence: {fields["text"]}\nQuestion: Does the pronoun "{fields["pronoun"]}" refer to "{fields["noun"]}"?'
        )
        return _truth(gold), block, fields

    def hub_row(self, row: dict) -> dict:
        row = super().hub_row(row)
        if "span1_index" in row:  # the hub flattens the official target object
            row["target"] = {k: row.pop(k) for k in ("span1_index", "span2_index", "span1_text", "span2_text")}
        return row


def _wsc_passage(record: dict) -> str:
    """The text with the pronoun marked ``*like this*``."""
    target = record["target"]
    words = record["text"].split(" ")
    index, span = target["span2_index"], target["span2_text"]
    if 0 <= index < len(words) and words[index].lower().startswith(span.split(" ")[0].lower()):
        words[index] = f"*{words[index]}*"
    return " ".join(words)


YES_NO_ANSWERS = {"Yes": "true", "No": "false"}  # the teacher's words for a true/false task
TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        BoolQ("boolq", "BoolQ", ("false", "true"), ("accuracy",), dict(YES_NO_ANSWERS)),
        CB(
            "cb",
            "CB",
            ("entailment", "contradiction", "neutral"),
            ("f1", "accuracy"),
            {"Entailment": "entailment", "Contradiction": "contradiction", "Neither": "neutral"},
            candidate_rows=True,
        ),
        COPA(
            "copa",
            "COPA",
            ("choice1", "choice2"),
            ("accuracy",),
            {"Option 1": "choice1", "Option 2": "choice2"},
            candidate_rows=True,
        ),
        MultiRC(
            "multirc",
            "MultiRC",
            ("false", "true"),
            ("f1a", "em"),
            dict(YES_NO_ANSWERS),
            per_answer=True,
            zero_shot_cot=False,
        ),
        RTE(
            "rte", "RTE", ("entailment", "not_entailment"), ("accuracy",), {"Yes": "entailment", "No": "not_entailment"}
        ),
        WiC("wic", "WiC", ("false", "true"), ("accuracy",), dict(YES_NO_ANSWERS)),
        WSC("wsc", "WSC", ("false", "true"), ("accuracy",), dict(YES_NO_ANSWERS)),
    ]
}


class OwnData(Task):
    """The user's own rows (a file or a dataset) as a task: one row per example, with the labels its training
    file has; scored by accuracy, with macro-F1 beside it. It has no SuperGLUE records: its teacher view and
    zero-shot prompt are the file's rows as ``prompts.file_items`` lays them out, answered with its label names."""

    def official_metrics(self, examples: Sequence[Example], probs: np.ndarray, input_format: str) -> dict:
        labels, row_pred = np.array([e.label for e in examples]), probs.argmax(-1)
        return {
            "accuracy": _percent(np.mean(row_pred == labels)),
            "macro_f1": _percent(f1_score(labels, row_pred, average="macro", zero_division=0)),
        }


# Every Example read from the user's own rows carries this task (its name is saved in models and files)
OWN_DATA = OwnData("custom", "custom", (), ("accuracy",), {}, own_data=True)


def task_rules(name: str) -> Task:
    """The rules of an example's task: a SuperGLUE task's, or else those of the user's own rows."""
    return TASKS.get(name, OWN_DATA)


class _AnswerWords(Mapping):
    """``{task: {answer word: native label}}``, read from ``TASKS`` at each look-up: the words have one home."""

    def __getitem__(self, name: str) -> dict[str, str]:
        return TASKS[name].answers

    def __iter__(self):
        return iter(TASKS)

    def __len__(self) -> int:
        return len(TASKS)


TASK_ANSWERS: Mapping[str, dict[str, str]] = _AnswerWords()


def chooses_candidate(task_name: str) -> bool:
    """Whether a yes/no example of this task is answered by choosing among its candidate rows (CB, COPA)."""
    return task_rules(task_name).candidate_rows


def parse_task_names(spec: str | Sequence[str]) -> list[str]:
    """``"all"``, ``"cb"``, ``"cb,rte"`` or a list: the task names, validated."""
    names = [spec] if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for part in names for n in part.split(",") if n.strip()]
    if names == ["all"]:
        return list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise DHRDInputError(
            f"unknown task {', '.join(unknown) or '(none)'!s}: choose from {', '.join(TASKS)} or 'all'"
        )
    return list(dict.fromkeys(names))


def default_data_dir() -> Path | None:
    """``$DHRD_DATA_DIR`` or the shared ``data/superglue`` folder."""
    return find_shared(Path("data") / "superglue", "DHRD_DATA_DIR")


# ---------------------------------------------------------------------------------------------- reading
def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; a bad line is reported with its file and line number."""
    return tables.read_jsonl(path)


def read_records(task: Task, split: str, data_dir: str | Path | None = None) -> tuple[list[dict], str]:
    """The official records of one split: from ``<data_dir>/<Task>/<split>.jsonl`` when there is a data
    directory, else from the Hugging Face hub (``super_glue``). Returns the records and where they came from.
    BoolQ with only ``val.jsonl`` takes its train split from the hub, or else carves train and validation
    out of ``val.jsonl`` (see ``boolq_carved``)."""
    if split not in SPLIT_FILES:
        raise DHRDInputError(f"unknown split {split!r}: choose from train, validation, test")
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    if task.name == "boolq" and split != "test" and base is not None and _boolq_val_only(base):
        hub = _hub_boolq_train()
        if hub is None:
            return _carved_boolq(base, split)
        if split == "train":
            return [dict(row) for row in hub[0]], hub[1]
    if base is not None:
        path = base / task.folder / SPLIT_FILES[split]
        if path.is_file():
            return read_jsonl(path), str(path)
        if data_dir is not None:
            raise DHRDInputError(f"{path}: file not found ({task.folder} {split} split)")
    return _hub_records(task, split, base)


def _hub_records(task: Task, split: str, base: Path | None) -> tuple[list[dict], str]:
    hub_split = "validation" if split == "val" else split
    try:
        from datasets import load_dataset

        dataset = load_dataset("super_glue", task.hub_config, split=hub_split)
    except Exception as error:  # the hub is unreachable offline; say what to do instead
        local = f"{base / task.folder / SPLIT_FILES[split]} does not exist and " if base is not None else ""
        raise DHRDInputError(
            f"{task.folder} {split} split: {local}the Hugging Face hub could not provide it "
            f"({type(error).__name__}); pass --data-dir with the official jsonl files"
        ) from None
    return task.from_hub([dict(row) for row in dataset]), f"hub:super_glue/{task.hub_config}/{hub_split}"


# ------------------------------------------------------------------------------------------ BoolQ carve
BOOLQ_HELD_OUT = 1000  # the least number of rows the carved validation split gets
BOOLQ_CARVE_NOTE = (
    "BoolQ's train split is not available here, so its train and validation splits were carved out of the "
    "official validation file by passage title: BoolQ figures are not comparable to the paper's."
)
_CARVE_TAG = "[carved BoolQ train/validation split, not comparable to the paper]"
_carve_warned: set[str] = set()


def _boolq_val_only(base: Path) -> bool:
    folder = base / TASKS["boolq"].folder
    return (folder / SPLIT_FILES["validation"]).is_file() and not (folder / SPLIT_FILES["train"]).is_file()


@functools.lru_cache(maxsize=1)
def _hub_boolq_train() -> tuple[list[dict], str] | None:
    """The hub's BoolQ train split, or None where the hub cannot give it. Asked once per process, so the
    train and validation splits always agree on whether BoolQ is carved (a carved train split must never
    meet the whole validation file)."""
    try:
        return _hub_records(TASKS["boolq"], "train", None)
    except DHRDInputError:
        return None


def boolq_carved(data_dir: str | Path | None = None) -> bool:
    """Whether BoolQ's train and validation splits are carved out of ``val.jsonl`` for this data directory:
    it has ``BoolQ/val.jsonl`` but no ``BoolQ/train.jsonl``, and the hub cannot give the train split."""
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    return base is not None and _boolq_val_only(base) and _hub_boolq_train() is None


def _boolq_title(record: dict, path: Path, row: int) -> str:
    passage = record.get("passage")
    if not isinstance(passage, str) or " -- " not in passage:
        raise DHRDInputError(
            f"{where(path, row, 'passage')}: expected 'title -- passage' (the official format) to carve BoolQ by title"
        )
    return passage.split(" -- ", 1)[0]


def carve_boolq(records: list[dict], path: Path) -> tuple[list[dict], list[dict]]:
    """(train, validation) out of BoolQ's validation records, split by passage title so no title is in both:
    titles in a seeded shuffle go to validation until it has ``BOOLQ_HELD_OUT`` rows, the rest to train."""
    titles = [_boolq_title(record, path, row) for row, record in enumerate(records, start=1)]
    unique = sorted(set(titles))
    counts = Counter(titles)
    held, size = set(), 0
    for k in np.random.default_rng(0).permutation(len(unique)):
        if size >= BOOLQ_HELD_OUT:
            break
        held.add(unique[k])
        size += counts[unique[k]]
    train = [r for r, t in zip(records, titles) if t not in held]
    validation = [r for r, t in zip(records, titles) if t in held]
    return train, validation


def _carved_boolq(base: Path, split: str) -> tuple[list[dict], str]:
    path = base / TASKS["boolq"].folder / SPLIT_FILES["validation"]
    train, validation = carve_boolq(read_jsonl(path), path)
    if str(path) not in _carve_warned:
        _carve_warned.add(str(path))
        logger.warning(
            "BoolQ: no train split (not in %s, not from the hub): carved %d train / %d validation rows out of %s "
            "by passage title; BoolQ figures are not comparable to the paper's",
            base,
            len(train),
            len(validation),
            path,
        )
    return (train if split == "train" else validation), f"{path} {_CARVE_TAG}"


def load_task_split(
    task_name: str, split: str, input_format: str = "yesno", data_dir: str | Path | None = None
) -> list[Example]:
    """The classifier rows of one split of one task."""
    if input_format not in INPUT_FORMATS:
        raise DHRDInputError(f"unknown input format {input_format!r}: choose from {', '.join(INPUT_FORMATS)}")
    task = TASKS[parse_task_names(task_name)[0]]
    records, source = read_records(task, split, data_dir)
    examples = []
    for row, record in enumerate(records, start=1):
        try:
            examples.extend(task.examples(record, input_format, source, row))
        except (KeyError, TypeError, AttributeError, IndexError) as error:
            # a field the checks above did not name (a WSC target without span indices, a non-text premise,
            # a MultiRC passage that is not an object): still one line naming the row, never a traceback
            raise DHRDInputError(f"{where(source, row)}: not a {task.folder} record ({_describe(error)})") from None
    if not examples:
        raise DHRDInputError(f"{source}: no examples")
    return examples


def _describe(error: Exception) -> str:
    return f"missing field {error.args[0]!r}" if isinstance(error, KeyError) else f"{type(error).__name__}: {error}"


SELECTIONS = ("seeded", "first")  # which rows a cap takes: a seeded sample, or the first N in file order


def sample_examples(examples: list[Example], n: int | None, seed: int, selection: str = "seeded") -> list[Example]:
    """The first ``n`` original examples of a seeded shuffle (all rows of a kept example stay together), in
    their original order; with ``selection="first"``, the first ``n`` examples in file order. Training caps,
    the teacher's capped subsets and ``dhrd reproduce`` share it, so a cap with the same seed (or ``first``)
    always selects the same examples."""
    if selection not in SELECTIONS:
        raise DHRDInputError(f"unknown selection {selection!r}: choose from {', '.join(SELECTIONS)}")
    if not n:
        return examples
    groups = list(dict.fromkeys(e.group for e in examples))
    if n >= len(groups):
        return examples
    positions = range(n) if selection == "first" else sample_positions(len(groups), n, seed)
    keep = {groups[k] for k in positions}
    return [e for e in examples if e.group in keep]


def carve_split(rows: list, fraction: float, seed: int, option: str = "--dev-fraction") -> tuple[list, list]:
    """A seeded split of ``fraction`` of the examples, stratified by label (whole examples: the yes/no rows
    of one example stay together), and the rows left to train on, each in their original order. The alpha
    search's dev split (``--dev-fraction``) and a validation split carved from a single training file
    (``--validation-fraction``) are both made here; ``option`` names the one a message is about."""
    from sklearn.model_selection import train_test_split

    groups = list(dict.fromkeys(e.group for e in rows))
    labels_of: dict = {}
    for e in rows:
        labels_of.setdefault(e.group, []).append(e.label)
    strata = [str(labels_of[g]) for g in groups]
    held_count = max(1, round(fraction * len(groups)))
    if held_count >= len(groups):
        raise DHRDInputError(f"{option} {fraction}: {len(groups)} training examples leave none to train on")
    counts = {s: strata.count(s) for s in strata}
    both_sides = min(held_count, len(groups) - held_count) >= len(counts)  # room for every label on each side
    stratify = strata if min(counts.values()) >= 2 and both_sides else None
    _, held_groups = train_test_split(groups, test_size=held_count, random_state=seed, stratify=stratify)
    held = set(held_groups)
    return [e for e in rows if e.group not in held], [e for e in rows if e.group in held]


def sample_positions(count: int, n: int, seed: int) -> list[int]:
    """The 0-based positions, in order, of the ``n`` of ``count`` items ``sample_examples`` keeps: a dataset
    whose rows are its examples is sampled by them without reading the other rows."""
    return sorted(np.random.default_rng(seed).permutation(count)[:n].tolist())


# ---------------------------------------------------------------------------------------------- metrics
def example_groups(examples: Sequence[Example]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        groups[example.group].append(i)
    return groups


def choice_predictions(examples: Sequence[Example], probs: np.ndarray) -> tuple[list[str], list[str]]:
    """Per original example: the candidate with the highest P(Yes), and the gold candidate."""
    chosen = choices_by_group(examples, probs)
    predicted, gold = [], []
    for group, rows in example_groups(examples).items():
        predicted.append(chosen.get(group, examples[rows[0]].candidate))
        gold_rows = [r for r in rows if examples[r].label == 1]
        gold.append(examples[gold_rows[0]].candidate if gold_rows else None)
    return predicted, gold


def choices_by_group(examples: Sequence[Example], probs: np.ndarray) -> dict[str, str]:
    """For examples split into candidate rows (yes/no COPA and CB): the candidate with the highest P(Yes)."""
    chosen = {}
    for group, rows in example_groups(examples).items():
        if len(rows) > 1 and chooses_candidate(examples[rows[0]].task) and examples[rows[0]].candidate:
            chosen[group] = examples[rows[int(np.argmax(np.asarray(probs)[rows, 1]))]].candidate
    return chosen


def _percent(value: float) -> float:
    return round(100.0 * float(value), 4)


def task_metrics(task_name: str, examples: Sequence[Example], probs: np.ndarray, input_format: str) -> dict:
    """Official metrics of one task, in percent, on its original examples; ``score`` is the paper's task
    score (CB and MultiRC pairs averaged). A user file's task: accuracy (its score) and macro-F1."""
    probs = np.asarray(probs, dtype=np.float64)
    result = task_rules(task_name).official_metrics(examples, probs, input_format)
    result.update(examples=len(example_groups(examples)), rows=len(examples))
    return _with_score(task_name, result)


def _with_score(task_name: str, result: dict) -> dict:
    """Add the task score (the mean of its official metrics) and put the official metrics first."""
    metric_names = task_rules(task_name).metrics
    result["score"] = round(float(np.mean([result[m] for m in metric_names])), 4)
    return {k: result[k] for k in [*metric_names, *sorted(set(result) - set(metric_names))]}


def constant_predictions(examples: Sequence[Example], num_labels: int) -> dict[str, np.ndarray]:
    """Probabilities of every constant predictor: one per label, and for candidate rows (yes/no CB and COPA)
    one per candidate (that candidate chosen for every example)."""
    predictors = {}
    candidates = sorted({e.candidate for e in examples if e.candidate and chooses_candidate(e.task)})
    for candidate in candidates:
        yes = np.array([1.0 if e.candidate == candidate else 0.0 for e in examples])
        predictors[f"always {candidate}"] = np.stack([1 - yes, yes], -1)
    if not candidates:
        for label in range(num_labels):
            predictors[f"always label {label}"] = np.eye(num_labels)[[label] * len(examples)]
    return predictors


def majority_floor(task_name: str, examples: Sequence[Example], input_format: str, num_labels: int) -> dict:
    """The task score of the best constant predictor on these examples (always the majority class, or for CB
    the constant whose F1/accuracy mean is highest): a model must beat it to have learnt anything."""
    best = None
    for name, probs in constant_predictions(examples, num_labels).items():
        metrics = task_metrics(task_name, examples, probs, input_format)
        if best is None or metrics["score"] > best["score"]:
            best = {"score": metrics["score"], "predictor": name}
    return best


def chance_score(
    task_name: str, examples: Sequence[Example], input_format: str, num_labels: int, draws: int = 200, seed: int = 0
) -> float:
    """The expected task score of guessing uniformly at random (a seeded Monte Carlo mean)."""
    rng = np.random.default_rng(seed)
    scores = [
        task_metrics(task_name, examples, rng.random((len(examples), num_labels)), input_format)["score"]
        for _ in range(draws)
    ]
    return round(float(np.mean(scores)), 2)


def floors(examples: Sequence[Example], input_format: str, num_labels: int) -> dict[str, dict]:
    """Per task in ``examples``: its majority floor (best constant predictor) and chance score."""
    by_task: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_task[example.task].append(example)
    return {
        name: {
            **majority_floor(name, rows, input_format, num_labels),
            "chance": chance_score(name, rows, input_format, num_labels),
        }
        for name, rows in by_task.items()
    }


def label_metrics(task_name: str, predicted: Sequence[str | None], gold: Sequence[str]) -> dict:
    """Official metrics, in percent, from one predicted native label per original example (systems that
    answer in text: CoT). ``None`` (no answer could be read) is scored as wrong."""
    task = TASKS.get(task_name)
    if task is not None and task.per_answer:
        raise DHRDInputError(f"{task.folder} is scored per answer (F1a, EM): it has no one label per example")
    said = [p if p is not None else "<unparsed>" for p in predicted]
    result = {"accuracy": _percent(np.mean([p == g for p, g in zip(said, gold)]))}
    if task is None:  # a user file's task: macro-F1 over the labels it has, beside accuracy
        result["macro_f1"] = _percent(f1_score(gold, said, labels=sorted(set(gold)), average="macro", zero_division=0))
    elif "f1" in task.metrics:
        names = list(task.native_labels)
        result["f1"] = _percent(f1_score(gold, said, labels=names, average="macro", zero_division=0))
    result["examples"] = len(gold)
    return _with_score(task_name, result)


def superglue_average(per_task: dict[str, dict]) -> float:
    """The paper's average: the mean of the task scores (CB and MultiRC metric pairs averaged first)."""
    return round(float(np.mean([m["score"] for m in per_task.values()])), 4)


def evaluate_rows(examples: Sequence[Example], probs: np.ndarray, input_format: str) -> dict:
    """Metrics for rows of one or several tasks: ``{"score": avg, "tasks": {task: metrics}}``."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        by_task[example.task].append(i)
    per_task = {
        name: task_metrics(name, [examples[i] for i in rows], np.asarray(probs)[rows], input_format)
        for name, rows in by_task.items()
    }
    return {"score": superglue_average(per_task), "tasks": per_task}


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """``{"score": s, "cb/f1": ..., ...}``: the flat form Trainer logs."""
    flat = {"score": metrics["score"]}
    for name, values in metrics["tasks"].items():
        for key, value in values.items():
            flat[f"{name}/{key}"] = value
    return flat
