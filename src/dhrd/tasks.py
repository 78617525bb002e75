"""The seven SuperGLUE classification tasks: reading, input formats, label words and official metrics.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from . import tables
from .errors import DHRDInputError, where
from .runtime import find_shared

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
class Task:
    name: str
    folder: str
    hub_config: str
    native_labels: tuple[str, ...]
    metrics: tuple[str, ...]

    def label_names(self, input_format: str) -> tuple[str, ...]:
        return YES_NO_LABELS if input_format == "yesno" else self.native_labels


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("boolq", "BoolQ", "boolq", ("false", "true"), ("accuracy",)),
        Task("cb", "CB", "cb", ("entailment", "contradiction", "neutral"), ("f1", "accuracy")),
        Task("copa", "COPA", "copa", ("choice1", "choice2"), ("accuracy",)),
        Task("multirc", "MultiRC", "multirc", ("false", "true"), ("f1a", "em")),
        Task("rte", "RTE", "rte", ("entailment", "not_entailment"), ("accuracy",)),
        Task("wic", "WiC", "wic", ("false", "true"), ("accuracy",)),
        Task("wsc", "WSC", "wsc", ("false", "true"), ("accuracy",)),
    ]
}


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
    rows = [_from_hub(task, dict(row)) for row in dataset]
    if task.name == "multirc":
        rows = _nest_multirc(rows)
    return rows, f"hub:super_glue/{task.hub_config}/{hub_split}"


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


def _from_hub(task: Task, row: dict) -> dict:
    """Map a hub row back to the official jsonl schema (class-label ints become the official values)."""
    if task.name in ("cb", "rte") and isinstance(row.get("label"), int):
        row["label"] = task.native_labels[row["label"]] if row["label"] >= 0 else None
    elif task.name in ("boolq", "wic", "wsc") and isinstance(row.get("label"), int):
        row["label"] = bool(row["label"]) if row["label"] >= 0 else None
    if task.name == "wsc" and "span1_index" in row:
        row["target"] = {k: row.pop(k) for k in ("span1_index", "span2_index", "span1_text", "span2_text")}
    if task.name == "multirc" and isinstance(row.get("label"), int) and row["label"] < 0:
        row["label"] = None
    return row


def _nest_multirc(rows: list[dict]) -> list[dict]:
    """The hub flattens MultiRC to one row per answer; rebuild the official passage/question/answer nesting."""
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


# ------------------------------------------------------------------------------------------- formatting
def _yes_no(passage: str, question: str, answer: str) -> str:
    return YES_NO_TEMPLATE.format(passage=passage.strip(), question=question.strip(), answer=answer.strip())


def _require(record: dict, fields: Iterable[str], source: str, row: int) -> None:
    for name in fields:
        value = record.get(name)
        if value is None:
            raise DHRDInputError(f"{where(source, row, name)}: missing")
        if isinstance(value, str) and not value.strip():
            raise DHRDInputError(f"{where(source, row, name)}: empty text")


def _label_index(value, names: Sequence[str], source: str, row: int, field: str = "label") -> int | None:
    if value is None:
        return None
    key = str(value).lower() if isinstance(value, bool) else str(value)
    if key not in names:
        raise DHRDInputError(f"{where(source, row, field)}: label {value!r} is not one of {', '.join(names)}")
    return names.index(key)


def _mark_word(sentence: str, start: int, end: int) -> str:
    return f"{sentence[:start]}*{sentence[start:end]}*{sentence[end:]}"


def _wsc_marked(text: str, index: int, span: str) -> str:
    words = text.split(" ")
    if 0 <= index < len(words) and words[index].lower().startswith(span.split(" ")[0].lower()):
        words[index] = f"*{words[index]}*"
    return " ".join(words)


def _examples_from_record(task: Task, record: dict, fmt: str, source: str, row: int) -> list[Example]:
    idx = record.get("idx", row - 1)
    group = f"{task.name}-{idx}"
    gold = record.get("label")
    labels = task.label_names(fmt)

    def one(
        text: str, label: int | None, suffix: str = "", candidate: str | None = None, grp: str = group, src: int = idx
    ):
        return Example(f"{grp}{suffix}", task.name, text, label, grp, candidate, src)

    def yes(flag: bool | None) -> int | None:
        return None if flag is None else int(bool(flag))

    name = task.name
    if name == "boolq":
        _require(record, ["question", "passage"], source, row)
        question = record["question"].strip().rstrip("?") + "?"
        if fmt == "yesno":
            return [one(_yes_no(record["passage"], question, "Yes"), yes(gold))]
        text = f"Passage: {record['passage'].strip()}\nQuestion: {question}"
        return [one(text, _label_index(gold, labels, source, row))]
    if name in ("cb", "rte"):
        _require(record, ["premise", "hypothesis"], source, row)
        premise, hypothesis = record["premise"], record["hypothesis"].strip()
        if gold is not None and gold not in task.native_labels:
            raise DHRDInputError(
                f"{where(source, row, 'label')}: label {gold!r} is not one of {', '.join(task.native_labels)}"
            )
        if fmt == "native":
            text = f"Premise: {premise.strip()}\nHypothesis: {hypothesis}"
            return [one(text, _label_index(gold, labels, source, row))]
        if name == "rte":
            question = f'Is the hypothesis "{hypothesis}" entailed by the passage?'
            return [one(_yes_no(premise, question, "Yes"), None if gold is None else int(gold == "entailment"))]
        question = f'What is the relation between the passage and the hypothesis "{hypothesis}"?'
        return [
            one(
                _yes_no(premise, question, answer),
                None if gold is None else int(gold == relation),
                f"#{relation}",
                relation,
            )
            for relation, answer in CB_RELATIONS.items()
        ]
    if name == "copa":
        _require(record, ["premise", "choice1", "choice2", "question"], source, row)
        if record["question"] not in COPA_QUESTIONS:
            raise DHRDInputError(f"{where(source, row, 'question')}: expected 'cause' or 'effect'")
        question = COPA_QUESTIONS[record["question"]]
        if fmt == "native":
            text = (
                f"Premise: {record['premise'].strip()}\nQuestion: {question}\n"
                f"Choice 1: {record['choice1'].strip()}\nChoice 2: {record['choice2'].strip()}"
            )
            label = None if gold is None else _label_index(f"choice{int(gold) + 1}", labels, source, row)
            return [one(text, label)]
        return [
            one(
                _yes_no(record["premise"], question, record[choice]),
                None if gold is None else int(int(gold) == k),
                f"#{choice}",
                choice,
            )
            for k, choice in enumerate(("choice1", "choice2"))
        ]
    if name == "multirc":
        passage = record.get("passage") or {}
        _require(passage, ["text", "questions"], source, row)
        rows = []
        for question in passage["questions"]:
            qgroup = f"{group}-{question['idx']}"
            for answer in question["answers"]:
                flag = answer.get("label")
                if fmt == "yesno":
                    text = _yes_no(passage["text"], question["question"], answer["text"])
                else:
                    text = (
                        f"Paragraph: {passage['text'].strip()}\nQuestion: {question['question'].strip()}\n"
                        f"Answer: {answer['text'].strip()}"
                    )
                # an answer's idx is unique in its split: the key of its per-answer rationale
                rows.append(one(text, yes(flag), f"-{answer['idx']}", answer["text"], qgroup, answer["idx"]))
        return rows
    if name == "wic":
        _require(record, ["word", "sentence1", "sentence2"], source, row)
        s1 = (
            _mark_word(record["sentence1"], record["start1"], record["end1"])
            if "start1" in record
            else record["sentence1"]
        )
        s2 = (
            _mark_word(record["sentence2"], record["start2"], record["end2"])
            if "start2" in record
            else record["sentence2"]
        )
        if fmt == "yesno":
            question = f'Does the word "{record["word"]}" have the same meaning in both sentences?'
            return [one(_yes_no(f"Sentence 1: {s1}\nSentence 2: {s2}", question, "Yes"), yes(gold))]
        text = f"Word: {record['word']}\nSentence 1: {s1}\nSentence 2: {s2}"
        return [one(text, _label_index(gold, labels, source, row))]
    if name == "wsc":
        _require(record, ["text", "target"], source, row)
        target = record["target"]
        passage = _wsc_marked(record["text"], target["span2_index"], target["span2_text"])
        if fmt == "yesno":
            question = f'Does the pronoun "{target["span2_text"]}" refer to "{target["span1_text"]}"?'
            return [one(_yes_no(passage, question, "Yes"), yes(gold))]
        text = f"Sentence: {passage}\nPronoun: {target['span2_text']}\nCandidate: {target['span1_text']}"
        return [one(text, _label_index(gold, labels, source, row))]
    raise DHRDInputError(f"unknown task {name!r}")


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
        examples.extend(_examples_from_record(task, record, input_format, source, row))
    if not examples:
        raise DHRDInputError(f"{source}: no examples")
    return examples


def sample_examples(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """The first ``n`` original examples of a seeded shuffle (all rows of a kept example stay together), in
    their original order. Training caps, the teacher's capped subsets and ``dhrd reproduce`` share it, so a
    cap with the same seed always selects the same examples."""
    if not n:
        return examples
    groups = list(dict.fromkeys(e.group for e in examples))
    if n >= len(groups):
        return examples
    keep = {groups[k] for k in sample_positions(len(groups), n, seed)}
    return [e for e in examples if e.group in keep]


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
        if len(rows) > 1 and examples[rows[0]].task in ("cb", "copa") and examples[rows[0]].candidate:
            chosen[group] = examples[rows[int(np.argmax(np.asarray(probs)[rows, 1]))]].candidate
    return chosen


def _percent(value: float) -> float:
    return round(100.0 * float(value), 4)


def task_metrics(task_name: str, examples: Sequence[Example], probs: np.ndarray, input_format: str) -> dict:
    """Official metrics of one task, in percent, on its original examples; ``score`` is the paper's task
    score (CB and MultiRC pairs averaged)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.array([e.label for e in examples])
    row_pred = probs.argmax(-1)
    if task_name in ("cb", "copa") and input_format == "yesno":
        predicted, gold = choice_predictions(examples, probs)
        accuracy = np.mean([p == g for p, g in zip(predicted, gold)])
        result = {"accuracy": _percent(accuracy)}
        if task_name == "cb":
            result["f1"] = _percent(
                f1_score(gold, predicted, labels=list(CB_RELATIONS), average="macro", zero_division=0)
            )
    elif task_name == "multirc":
        correct = row_pred == labels
        em = np.mean([correct[rows].all() for rows in example_groups(examples).values()])
        result = {"f1a": _percent(f1_score(labels, row_pred, pos_label=1, zero_division=0)), "em": _percent(em)}
    elif task_name == "cb":
        result = {
            "f1": _percent(f1_score(labels, row_pred, labels=[0, 1, 2], average="macro", zero_division=0)),
            "accuracy": _percent(np.mean(row_pred == labels)),
        }
    elif task_name in TASKS:
        result = {"accuracy": _percent(np.mean(row_pred == labels))}
    else:  # user data
        result = {
            "accuracy": _percent(np.mean(row_pred == labels)),
            "macro_f1": _percent(f1_score(labels, row_pred, average="macro", zero_division=0)),
        }
    result.update(examples=len(example_groups(examples)), rows=len(examples))
    return _with_score(task_name, result)


def _with_score(task_name: str, result: dict) -> dict:
    """Add the task score (the mean of its official metrics) and put the official metrics first."""
    metric_names = TASKS[task_name].metrics if task_name in TASKS else ("accuracy",)
    result["score"] = round(float(np.mean([result[m] for m in metric_names])), 4)
    return {k: result[k] for k in [*metric_names, *sorted(set(result) - set(metric_names))]}


def constant_predictions(examples: Sequence[Example], num_labels: int) -> dict[str, np.ndarray]:
    """Probabilities of every constant predictor: one per label, and for candidate rows (yes/no CB and COPA)
    one per candidate (that candidate chosen for every example)."""
    predictors = {}
    candidates = sorted({e.candidate for e in examples if e.candidate and e.task in ("cb", "copa")})
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
    if task_name == "multirc":
        raise DHRDInputError("MultiRC is scored per answer (F1a, EM): it has no one label per example")
    said = [p if p is not None else "<unparsed>" for p in predicted]
    result = {"accuracy": _percent(np.mean([p == g for p, g in zip(said, gold)]))}
    names = list(TASKS[task_name].native_labels) if task_name in TASKS else sorted(set(gold))
    if task_name == "cb" or task_name not in TASKS:
        result["f1" if task_name == "cb" else "macro_f1"] = _percent(
            f1_score(gold, said, labels=names, average="macro", zero_division=0)
        )
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
