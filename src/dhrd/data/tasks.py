"""The seven SuperGLUE classification tasks in ``TASKS``, your own rows as a task (``OWN_DATA``), and the
look-ups over them: input formats, label words and which tasks choose among candidate rows.

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
averages CB's F1/accuracy and MultiRC's F1a/EM, and the SuperGLUE average is the mean of the task scores
(``task_metrics``).

The rest of a task lives below: ``Task`` (``task_base``), the row types (``examples``), the record helpers
(``superglue_records``), BoolQ and its carve (``boolq``); above it, reading a split (``task_splits``), the
rows a cap keeps (``selection``) and the metrics (``task_metrics``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from sklearn.metrics import f1_score

from ..errors import DHRDInputError, where
from .boolq import BOOLQ
from .examples import Example, TeacherItem, candidate_choices, candidate_predictions, percent
from .superglue_records import (
    CB_RELATIONS,
    COPA_QUESTIONS,
    filled_text,
    label_index,
    nest_multirc,
    object_list,
    record_example,
    record_text,
    require_fields,
    truth_label,
    wic_sentences,
    wsc_passage,
    yes_no_text,
)
from .task_base import YES_NO_ANSWERS, Task, TrueFalseTask


# ------------------------------------------------------------------------------------------- the tasks
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
            "premise": record_text(record, "premise", source, row),
            "hypothesis": record_text(record, "hypothesis", source, row),
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
            record_example(
                self.name,
                record,
                row,
                yes_no_text(record["premise"], question, answer),
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
            label = None if gold is None else label_index(f"choice{int(gold) + 1}", self.native_labels, source, row)
            return [record_example(self.name, record, row, text, label)]
        return [
            record_example(
                self.name,
                record,
                row,
                yes_no_text(record["premise"], question, record[choice]),
                None if gold is None else int(int(gold) == k),
                f"#{choice}",
                choice,
            )
            for k, choice in enumerate(self.native_labels)
        ]

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        fields = {name: record_text(record, name, source, row) for name in ("premise", "choice1", "choice2")}
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
        require_fields(passage, ["text", "questions"], source, row)
        group = f"{self.name}-{record.get('idx', row - 1)}"
        rows = []
        for question in passage["questions"]:
            qgroup = f"{group}-{question['idx']}"
            for answer in question["answers"]:
                flag = answer.get("label")
                if input_format == "yesno":
                    text = yes_no_text(passage["text"], question["question"], answer["text"])
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
        paragraph = filled_text(passage.get("text"), source, row, "passage.text")
        items = []
        for q, question in enumerate(object_list(passage.get("questions"), source, row, "passage.questions")):
            at = f"passage.questions[{q}]"
            asked = filled_text(question.get("question"), source, row, f"{at}.question")
            for a, answer in enumerate(object_list(question.get("answers"), source, row, f"{at}.answers")):
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
        label = truth_label(gold)
        return TeacherItem(idx, label, self.answer_word(label), block, fields)

    def from_hub(self, rows: list[dict]) -> list[dict]:
        """The hub flattens MultiRC to one row per answer; the official jsonl nests answers in questions in
        passages."""
        return nest_multirc([self.hub_row(row) for row in rows])

    def official_label(self, index: int):
        return index  # the official answer labels are 0/1


class WiC(TrueFalseTask):
    required = ("word", "sentence1", "sentence2")

    def yes_no_parts(self, record: dict) -> tuple[str, str]:
        s1, s2 = wic_sentences(record)
        question = f'Does the word "{record["word"]}" have the same meaning in both sentences?'
        return f"Sentence 1: {s1}\nSentence 2: {s2}", question

    def native_text(self, record: dict) -> str:
        s1, s2 = wic_sentences(record)
        return f"Word: {record['word']}\nSentence 1: {s1}\nSentence 2: {s2}"

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        fields = {name: record_text(record, name, source, row) for name in ("word", "sentence1", "sentence2")}
        block = (
            f"Word: {fields['word']}\nSentence 1: {fields['sentence1']}\nSentence 2: {fields['sentence2']}\n"
            f'Question: Does the word "{fields["word"]}" have the same meaning in both sentences?'
        )
        return truth_label(gold), block, fields


class WSC(TrueFalseTask):
    required = ("text", "target")

    def yes_no_parts(self, record: dict) -> tuple[str, str]:
        target = record["target"]
        return wsc_passage(record), f'Does the pronoun "{target["span2_text"]}" refer to "{target["span1_text"]}"?'

    def native_text(self, record: dict) -> str:
        target = record["target"]
        return f"Sentence: {wsc_passage(record)}\nPronoun: {target['span2_text']}\nCandidate: {target['span1_text']}"

    def teacher_view(self, record: dict, gold, source: str, row: int) -> tuple[str, str, dict]:
        target = record.get("target") or {}
        fields = {
            "text": record_text(record, "text", source, row),
            "pronoun": target.get("span2_text", ""),
            "noun": target.get("span1_text", ""),
        }
        if not fields["pronoun"] or not fields["noun"]:
            raise DHRDInputError(f"{where(source, row, 'target')}: missing span texts")
        block = (
            f'Sentence: {fields["text"]}\nQuestion: Does the pronoun "{fields["pronoun"]}" refer to "{fields["noun"]}"?'
        )
        return truth_label(gold), block, fields

    def hub_row(self, row: dict) -> dict:
        row = super().hub_row(row)
        if "span1_index" in row:  # the hub flattens the official target object
            row["target"] = {k: row.pop(k) for k in ("span1_index", "span2_index", "span1_text", "span2_text")}
        return row


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        BOOLQ,
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
            "accuracy": percent(np.mean(row_pred == labels)),
            "macro_f1": percent(f1_score(labels, row_pred, average="macro", zero_division=0)),
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


# ---------------------------------------------------------------------------------------------- reading


# ---------------------------------------------------------------------------------------- candidate rows
def choice_predictions(examples: Sequence[Example], probs: np.ndarray) -> tuple[list[str], list[str]]:
    """Per original example: the candidate with the highest P(Yes), and the gold candidate."""
    return candidate_predictions(examples, probs, chooses_candidate)


def choices_by_group(examples: Sequence[Example], probs: np.ndarray) -> dict[str, str]:
    """For examples split into candidate rows (yes/no COPA and CB): the candidate with the highest P(Yes)."""
    return candidate_choices(examples, probs, chooses_candidate)
