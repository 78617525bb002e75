"""Teacher prompts and the quality filter for their answers.

The default prompt is the paper's (Appendix E.3, ``paper.md`` §3): the teacher sees the gold answer and
justifies it in 2-5 sentences ("Let's think step by step"), never saying Yes/No/True/False or a synonym,
ends the explanation with the sentinel ``[END OF REASONING]`` and then writes ``Answer: <label>``. The
unconditioned variant hides the answer, so the teacher's own answer can be checked against the gold one.
Only the explanation (the text before the sentinel) becomes the rationale.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.examples import TeacherItem
from ..data.inputs import Columns, RowKeys, bare_numbers, file_label_names, row_text
from ..data.tables import iter_table, read_text, table_source
from ..data.task_splits import read_records
from ..data.tasks import TASK_ANSWERS as TASK_ANSWERS  # re-exported: the teacher's answer words, read from each Task
from ..data.tasks import TASKS
from ..errors import DHRDInputError, where

SENTINEL = "[END OF REASONING]"
PROMPT_MODES = ("label", "free")  # label-conditioned (the paper's) or unconditioned
CHECKS = ("empty", "truncated", "repetitive", "leak", "contradicts", "short", "conclusion", "invented")
POLICIES = ("retry", "drop", "keep")

# The rules go in the system turn, the example last: every request then starts with the same tokens, which
# servers with a prompt cache (llama.cpp, vLLM) compute once per slot instead of once per example.
_RULES = """Rules:
1. Do not use the words Yes, No, True, False or any synonym of them in the explanation.
2. Keep it to one short paragraph.
3. End the explanation with {sentinel}
4. Then, on a new line, write "Answer: " followed by {which}."""
SYSTEM_LABEL = (
    "You are a careful teacher. Each message gives a reading-comprehension question together with its "
    "correct answer. Let's think step by step: in 2-5 sentences, explain why the given answer is correct.\n"
    + _RULES.replace("{which}", "the given answer")
)
SYSTEM_FREE = (
    "You are a careful teacher. Each message gives a reading-comprehension question and its possible answers. "
    "Let's think step by step: in 2-5 sentences, work out which answer is correct.\n"
    + _RULES.replace("{which}", "one of the possible answers")
)
LABEL_CONDITIONED = "{input}\nAnswer: {answer}\nReasoning:"
UNCONDITIONED = "{input}\nPossible answers: {answers}\nReasoning:"
BUILTIN_PROMPT_IDS = {"label": "paper-lc-v2", "free": "paper-free-v2"}
PLACEHOLDERS = {"input", "answer", "answers", "sentinel"}

# Words that give the answer away (the paper's rule 1). "no" counts only as an answer ("No, ..." or a
# sentence of its own): as a determiner ("no women are allowed") it is ordinary English.
_LEAK = re.compile(r"\b(yes|true|false|correct|incorrect)\b|(?:^|[.!?]\s+)no\b(?=\s*[,.!;:]|$)", re.IGNORECASE)
_PREFIX = re.compile(r"^\s*(reasoning|explanation|rationale|reason)\s*:\s*", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"(?:^|\n)\s*\**\s*(?:final\s+)?answer\s*\**\s*:\s*\**\s*(.+)", re.IGNORECASE)


@dataclass(frozen=True)
class PromptTemplate:
    prompt_id: str
    system: str | None
    user: str
    mode: str = "label"
    sentinel: str = SENTINEL

    def messages(self, item: TeacherItem, answers: Sequence[str]) -> list[dict]:
        values = {**item.fields, "input": item.input, "answer": item.answer, "sentinel": self.sentinel}
        values["answers"] = " / ".join(answers)
        messages = [{"role": "system", "content": self.system.format(**values)}] if self.system else []
        return messages + [{"role": "user", "content": self.user.format(**values)}]


def builtin_template(mode: str = "label") -> PromptTemplate:
    if mode not in PROMPT_MODES:
        raise DHRDInputError(f"unknown prompt mode {mode!r}: choose from {', '.join(PROMPT_MODES)}")
    if mode == "label":
        return PromptTemplate(BUILTIN_PROMPT_IDS[mode], SYSTEM_LABEL, LABEL_CONDITIONED, mode)
    return PromptTemplate(BUILTIN_PROMPT_IDS[mode], SYSTEM_FREE, UNCONDITIONED, mode)


def load_template(
    path: str | Path, mode: str, allowed_fields: Sequence[str] = (), encoding: str | None = None
) -> PromptTemplate:
    """A user template: the file is the user turn; a first block ``system: ...`` ended by a line ``---``
    sets the system turn. Its prompt id is the file name plus a hash of its text, so editing the file
    starts a new cache instead of mixing two prompts."""
    path = Path(path)
    if not path.is_file():
        raise DHRDInputError(f"{path}: template file not found")
    text = read_text(path, encoding).replace("\r\n", "\n")
    system, user = None, text
    head, sep, rest = text.partition("\n---\n")
    if sep and head.lower().startswith("system:"):
        system, user = head[len("system:") :].strip(), rest
    user = user.strip("\n")
    allowed = PLACEHOLDERS | set(allowed_fields)
    for number, line in enumerate(text.splitlines(), start=1):  # both turns are filled in
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(line) if name is not None]
        except ValueError as error:
            raise DHRDInputError(f"{where(path, number)}: bad template ({error}); write {{{{ }}}} for braces") from None
        for name in names:
            if name not in allowed:
                raise DHRDInputError(
                    f"{where(path, number)}: unknown placeholder {{{name}}}: use {', '.join(sorted(allowed))}"
                )
    if mode == "label" and "{answer}" not in text:
        raise DHRDInputError(f"{path}: a label-conditioned template must show the gold label: add {{answer}}")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return PromptTemplate(f"{path.stem}-{digest}", system, user, mode)


# ------------------------------------------------------------------------------------------ task items
def task_items(task: str, data_dir: str | Path | None = None, split: str = "train") -> tuple[list[TeacherItem], str]:
    """The teacher's view of a SuperGLUE split (each task lays out its own records: ``task_base.Task``)."""
    if task not in TASKS:
        raise DHRDInputError(f"the teacher does not support {task!r}: choose from {', '.join(TASKS)}")
    rules = TASKS[task]
    records, source = read_records(rules, split, data_dir)
    items = [item for row, record in enumerate(records, start=1) for item in rules.teacher_items(record, source, row)]
    return items, source


def file_question(instruction: str | None, labels: Sequence[str]) -> str:
    """The question a user file's rows put to the teacher: the task's instruction, or else one that names
    the labels (a teacher shown only "Answer: positive" has to guess what was asked)."""
    if instruction:
        return instruction
    return f"Which of these labels fits the text: {', '.join(labels)}?"


def file_titles(columns: Columns) -> tuple[str, str]:
    """What each text is called in the teacher's prompt: its column's name ("Premise: ...", "Review: ..."), so
    that an instruction may refer to the texts by their names; "Text" for a column named only ``text``."""

    def title(name: str | None, fallback: str) -> str:
        words = (name or "").replace("_", " ").strip()
        return words[:1].upper() + words[1:] if words and words.lower() not in ("text", "text pair") else fallback

    return title(columns.text, "Text"), title(columns.text_pair, "Second text")


def file_items(
    path: str | Path,
    columns: Columns,
    encoding: str | None = None,
    instruction: str | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[list[TeacherItem], dict[str, str]]:
    """A user file's rows and its labels, each row laid out as the SuperGLUE prompts lay out theirs: the
    text(s), then the task's question. Rows are keyed as training keys them (``data.RowKeys``): by the
    ``columns.id`` column, or by their 1-based row number. Labels are their names (``--label-names``): bare
    numbers are left as they are here (an imported file needs no names); ``check_teacher_labels`` refuses them
    before a teacher is asked. ``path`` may be a ``datasets`` split, read as a file is. ``labels``: the task's
    label set where ``path`` is not its training file (a test file's rows are asked what training's were)."""
    path = table_source(path)
    columns = replace(columns, instruction=None)  # the question is placed below, in the teacher's layout
    labels = tuple(labels) if labels is not None else file_label_names(path, columns, encoding)
    question = file_question(instruction, labels)
    titles = file_titles(columns)
    keys = RowKeys(path, columns.id)
    items = []
    for number, row in iter_table(path, encoding):
        row_text(row, columns, path, number)  # refuses a missing column or empty text, naming the row
        fields = {"text": str(row[columns.text]).strip(), "question": question}
        block = f"{titles[0]}: {fields['text']}"
        if columns.text_pair:
            fields["text_pair"] = str(row[columns.text_pair]).strip()
            block += f"\n{titles[1]}: {fields['text_pair']}"
        label = columns.label_name(row[columns.label])
        items.append(TeacherItem(keys(row, number), label, label, f"{block}\nQuestion: {question}", fields))
    return items, {label: label for label in labels}


def check_teacher_labels(path: str | Path, columns: Columns, labels: Sequence[str]) -> None:
    """Refuse bare-number labels before a teacher is asked: "explain why the answer is 1" makes it invent
    the task ("The given answer is incorrect", a question of its own), and the reasoning head then learns
    to end with "Final Answer: 1"."""
    if bare_numbers(tuple(labels)):
        example = ",".join(f"{label}=<name>" for label in labels)
        raise DHRDInputError(
            f"{path}: the labels of column {columns.label!r} are bare numbers ({', '.join(labels)}), which mean "
            f"nothing to a teacher: name them with --label-names {example} (and say what the task is with "
            "--instruction)"
        )


# --------------------------------------------------------------------------------------------- quality
@dataclass
class Checked:
    rationale: str | None
    teacher_answer: str | None  # the answer word the teacher gave, matched to ``answers``; None if none
    problems: list[str]


def parse_answer(text: str, answers: Sequence[str]) -> str | None:
    """The teacher's last ``Answer: X`` matched leniently (case, punctuation, markdown) to one answer word."""
    found = _ANSWER_LINE.findall(text)
    return match_answer(found[-1], answers) if found else None


# what may stand between the words of an echoed option list: "Yes or No", "Entailment / Contradiction"
_LIST_GAP = re.compile(r"[\s*_`\"'.,;:/|()\[\]-]*(?:\b(?:or|and)\b)?[\s*_`\"'.,;:/|()\[\]-]*", re.IGNORECASE)


def match_answer(said: str, answers: Sequence[str]) -> str | None:
    """The one answer word a phrase commits to: the word it starts with ("Yes, because ...", "**Neither**,
    since there is no entailment"), or else the only answer word it names ("it is Entailment"). An echoed
    option list ("Entailment / Contradiction / Neither", "Yes or No") commits to none: never a guess."""
    said = said.lower()
    spans: list[tuple[int, int, str]] = []
    for answer in sorted(answers, key=len, reverse=True):  # "Option 1" claims its "1" first
        for m in re.finditer(rf"(?<!\w){re.escape(answer.lower())}(?!\w)", said):
            if not any(start <= m.start() < end for start, end, _ in spans):
                spans.append((m.start(), m.end(), answer))
    if not spans:
        return None
    spans.sort()
    first = spans[0]
    if not re.search(r"\w", said[: first[0]]):  # the phrase starts with an answer word
        at = next((k for k, span in enumerate(spans) if span[2] != first[2]), None)
        if at is not None:
            following, after = spans[at], spans[at + 1][0] if at + 1 < len(spans) else len(said)
            # a list: another answer right after this one, and nothing but punctuation or "or" after that
            # ("Yes, no doubt" commits to Yes; "Yes, No" and "Yes or No?" to nothing)
            if _LIST_GAP.fullmatch(said[first[1] : following[0]]) and _LIST_GAP.fullmatch(said[following[1] : after]):
                return None
        return first[2]
    named = {answer for _, _, answer in spans}
    return named.pop() if len(named) == 1 else None


def clean_rationale(text: str, sentinel: str = SENTINEL) -> str:
    """The explanation only: before the sentinel (or before an ``Answer:`` line when it is missing), without
    a leading "Reasoning:" and with whitespace collapsed. A teacher that answers first ("Answer: Yes" on the
    first line, then "Explanation: ...", as small instruct models often do) keeps the text after that line."""
    before = text.split(sentinel, 1)[0]
    answer = _ANSWER_LINE.search(before)
    if answer:
        ahead = before[: answer.start()]
        before = ahead if ahead.strip() else before[answer.end() :]
        second = _ANSWER_LINE.search(before)  # an answer line after the explanation ends it too
        if second and not ahead.strip():
            before = before[: second.start()]
    return " ".join(_PREFIX.sub("", before.strip()).split())


def is_repetitive(text: str) -> bool:
    """Degenerate loops: fewer than half of the word trigrams are distinct (on 12+ words)."""
    words = text.lower().split()
    if len(words) < 12:
        return False
    trigrams = list(zip(words, words[1:], words[2:]))
    return len(set(trigrams)) / len(trigrams) < 0.5


# ------------------------------------------------------------------------------- reading the rationale
MIN_WORDS = 5  # fewer words than this explain nothing ("The movie review is")
# a rationale that ends on one of these stopped mid-sentence, whatever its length
_DANGLING = set(
    "a an the is are was were be been being of to in on at by for with from as and or but nor that which who "
    "whose this these those its their his her our your my than then because since so if while whereas".split()
)
_NEGATORS = set("not no never neither nor without nothing none cannot hardly lacks lack lacking rather instead".split())
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_BREAK = re.compile(r"[,;:()]")
# "Answer: positive" or "Final Answer - yes" written inside the explanation: the prompt's own format, which a
# rationale that quotes the text as saying it has invented (the input never holds it)
_ANSWER_QUOTE = re.compile(r"\b(?:final\s+)?answer\s*(?::|=|-\s)", re.IGNORECASE)
_QUOTED = re.compile(r"[\"\u201c\u201d]([^\"\u201c\u201d]{1,200})[\"\u201c\u201d]|(?<!\w)'([^']{1,200})'(?!\w)")
_SUFFIXES = ("ively", "ments", "ment", "ions", "ion", "ives", "ive", "ory", "ly", "ing", "ed", "es", "s")


def stem(word: str) -> str:
    """A crude stem, enough to tell label words apart in their usual forms: entails / entailment / entailed ->
    entail, contradicts / contradiction -> contradict, positively -> posit."""
    word = word.lower()
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def words_of(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def is_short(rationale: str) -> bool:
    """Fewer than ``MIN_WORDS`` words, or a fragment that stops on a word no sentence ends with
    ("The movie review is", "... because of the")."""
    words = words_of(rationale)
    return len(words) < MIN_WORDS or (not rationale.rstrip().endswith((".", "!", "?", '"')) and words[-1] in _DANGLING)


def label_terms(answers) -> dict[str, list[tuple[str, bool]]]:
    """``answer -> [(stem, asserted)]``: the words that name each answer in a rationale. A task's answer word
    and its label both count (Neither / neutral); "not_entailment" is entailment negated. Yes/No/True/False
    name no label here (the leak check forbids them), and a stem that names two labels alike names none."""
    mapping = answers if isinstance(answers, dict) else {a: a for a in answers}
    found: dict[str, set] = {}
    for answer, label in mapping.items():
        for name in {str(answer), str(label)}:
            words = words_of(name.replace("_", " "))
            negated = any(w in _NEGATORS for w in words)
            content = [w for w in words if w not in _NEGATORS and not w.isdigit()]
            if len(content) != 1 or content[0] in ("yes", "no", "true", "false") or len(content[0]) < 4:
                continue
            found.setdefault(answer, set()).add((stem(content[0]), not negated))
    owners: dict[tuple[str, bool], set] = {}
    for answer, terms in found.items():
        for term in terms:
            owners.setdefault(term, set()).add(answer)
    return {a: sorted(t for t in terms if len(owners[t]) == 1) for a, terms in found.items()}


def conclusion_answer(rationale: str, answers, gold: str) -> tuple[str | None, bool]:
    """What the rationale's conclusion says of the answers: its last sentence that names one, read with
    negation ("does not entail", "neither ... nor"). Returns (the sentence, whether it argues against ``gold``:
    it asserts another answer and not gold, or denies gold)."""
    terms = label_terms(answers)
    by_term = {term: answer for answer, found in terms.items() for term in found}
    stems = {s for s, _ in by_term}
    if not by_term or gold not in terms:
        return None, False
    for sentence in reversed(_SENTENCE_END.split(rationale.strip())):
        supported, opposed = set(), set()
        for clause in _CLAUSE_BREAK.split(sentence):
            words = words_of(clause)
            for k, word in enumerate(words):
                root = stem(word)
                if root not in stems:
                    continue
                negated = any(w in _NEGATORS or w.endswith("n't") for w in words[max(0, k - 3) : k])
                if (root, not negated) in by_term:
                    supported.add(by_term[(root, not negated)])
                elif negated and (root, True) in by_term:
                    opposed.add(by_term[(root, True)])
        if supported or opposed:
            if len(terms) == 2:  # of two answers, denying one asserts the other
                supported |= {a for a in terms if opposed and a not in opposed}
            against = gold in opposed or (bool(supported) and gold not in supported)
            return sentence, against
    return None, False


def invented_answer_quote(rationale: str, source: str) -> bool:
    """The rationale writes an ``Answer: ...`` (the prompt's format) that the input text never holds."""
    return bool(_ANSWER_QUOTE.search(rationale)) and not _ANSWER_QUOTE.search(source)


def _quoted_from(source_words: str, rationale: str) -> str:
    """The rationale with the words it copies from the input blanked out (its punctuation kept): quoted spans the
    input holds, and any run of three words the input holds, so that a text's own "yes" is not the teacher
    leaking the label."""

    def unquote(m: re.Match) -> str:
        inner = m.group(1) or m.group(2) or ""
        return " " if f" {' '.join(words_of(inner))} " in source_words else m.group(0)

    kept = _QUOTED.sub(unquote, rationale)
    spans = list(_WORD.finditer(kept))
    lower = [m.group(0).lower() for m in spans]
    copied = [False] * len(spans)
    for k in range(len(spans) - 2):
        if f" {' '.join(lower[k : k + 3])} " in source_words:
            copied[k] = copied[k + 1] = copied[k + 2] = True
    pieces, at = [], 0
    for m, blank in zip(spans, copied):
        if blank:
            pieces += [kept[at : m.start()], "_"]
            at = m.end()
    return "".join(pieces) + kept[at:]


def leaks(rationale: str, source: str = "") -> bool:
    """Yes/True/False/correct/incorrect, or "No" as an answer, in the teacher's own words (what it copies from
    the input does not count)."""
    if not _LEAK.search(rationale):
        return False
    if not source:
        return True
    return bool(_LEAK.search(_quoted_from(f" {' '.join(words_of(source))} ", rationale)))


def check_output(
    text: str | None,
    item: TeacherItem,
    answers: Sequence[str],
    sentinel: str = SENTINEL,
    checks=CHECKS,
    finish_reason: str | None = None,
) -> Checked:
    """The rationale in a teacher's answer and what is wrong with it. ``truncated``: the explanation was cut
    by the token budget, i.e. no sentinel ends it and the teacher did not stop of itself (``finish_reason``
    "stop"). A teacher that stopped without the sentinel (small instruct models often do) has finished its
    explanation: the text before an ``Answer:`` line, or all of it, is the rationale."""
    if not isinstance(text, str) or not text.strip():
        return Checked(rationale=None, teacher_answer=None, problems=["empty"])
    rationale = clean_rationale(text, sentinel)
    teacher_answer = parse_answer(text.split(sentinel, 1)[1] if sentinel in text else text, answers)
    problems = []
    if len(rationale) < 3:
        problems.append("empty")
    cut = sentinel not in text and finish_reason != "stop"
    if "truncated" in checks and cut:
        problems.append("truncated")
    if "repetitive" in checks and is_repetitive(rationale):
        problems.append("repetitive")
    source = _item_text(item)
    if "leak" in checks and leaks(rationale, source):
        problems.append("leak")
    if "contradicts" in checks and teacher_answer is not None and teacher_answer != item.answer:
        problems.append("contradicts")
    # a fragment cut by the budget is truncated (and a loop repetitive) already; one the teacher stopped on is short
    if "short" in checks and rationale and not {"empty", "truncated", "repetitive"} & set(problems):
        problems += ["short"] if is_short(rationale) else []
    if "conclusion" in checks and rationale and conclusion_answer(rationale, answers, item.answer)[1]:
        problems.append("conclusion")
    if "invented" in checks and invented_answer_quote(rationale, source):
        problems.append("invented")
    return Checked(rationale or None, teacher_answer, problems)


def _item_text(item: TeacherItem) -> str:
    """The example's own text (its fields, else its prompt block), without the question dhrd adds."""
    fields = {k: v for k, v in (item.fields or {}).items() if k != "question" and isinstance(v, str)}
    return "\n".join(fields.values()) if fields else item.input
