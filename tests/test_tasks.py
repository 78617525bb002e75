import numpy as np
import pytest
from conftest import write_jsonl

from dhrd.data.examples import Example
from dhrd.data.task_metrics import evaluate_rows, task_metrics
from dhrd.data.task_splits import load_task_split
from dhrd.data.tasks import TASKS, parse_task_names
from dhrd.errors import DHRDInputError


def test_parse_task_names():
    assert parse_task_names("all") == list(TASKS)
    assert parse_task_names("CB, rte") == ["cb", "rte"]
    assert parse_task_names(["cb", "cb"]) == ["cb"]
    with pytest.raises(DHRDInputError, match="unknown task nope"):
        parse_task_names("cb,nope")


def test_yesno_format_rows(superglue_dir):
    cb = load_task_split("cb", "validation", "yesno", superglue_dir)
    assert len(cb) == 6 * 3  # one row per relation
    first = cb[:3]
    assert {e.candidate for e in first} == {"entailment", "contradiction", "neutral"}
    assert sum(e.label for e in first) == 1  # exactly the gold relation is "Yes"
    assert first[0].text.startswith("Passage:\nAnn said it") and first[0].text.endswith(
        "Is the answer correct Yes or No?"
    )
    copa = load_task_split("copa", "train", "yesno", superglue_dir)
    assert len(copa) == 16 and copa[0].group == copa[1].group
    assert "What was the cause of this?" in copa[0].text and "What happened as a result?" in copa[2].text
    multirc = load_task_split("multirc", "validation", "yesno", superglue_dir)
    assert len(multirc) == 2 * 2 * 2 and len({e.group for e in multirc}) == 4  # grouped per question
    rte = load_task_split("rte", "validation", "yesno", superglue_dir)
    assert [e.label for e in rte] == [0, 1, 0, 1]


def test_native_format_rows(superglue_dir):
    cb = load_task_split("cb", "validation", "native", superglue_dir)
    assert len(cb) == 6 and [e.label for e in cb[:3]] == [0, 1, 2]
    assert cb[0].text.startswith("Premise: ")
    copa = load_task_split("copa", "validation", "native", superglue_dir)
    assert len(copa) == 4 and "Choice 2: The sun set." in copa[0].text and [e.label for e in copa] == [0, 1, 0, 1]


def test_test_split_has_no_labels(superglue_dir):
    rows = load_task_split("cb", "test", "yesno", superglue_dir)
    assert rows and all(e.label is None for e in rows)


def test_bad_task_files(tmp_path):
    write_jsonl(tmp_path / "CB" / "train.jsonl", [{"premise": "a", "hypothesis": "b", "label": "maybe", "idx": 0}])
    with pytest.raises(DHRDInputError, match=r"CB/train.jsonl: row 1: field 'label': label 'maybe'"):
        load_task_split("cb", "train", "yesno", tmp_path)
    write_jsonl(tmp_path / "RTE" / "train.jsonl", [{"premise": "  ", "hypothesis": "b", "label": "entailment"}])
    with pytest.raises(DHRDInputError, match=r"row 1: field 'premise': empty text"):
        load_task_split("rte", "train", "yesno", tmp_path)
    (tmp_path / "COPA").mkdir()
    (tmp_path / "COPA" / "train.jsonl").write_text('{"premise": "x"}\n{oops\n')
    with pytest.raises(DHRDInputError, match=r"COPA/train.jsonl: row 2: unreadable JSON"):
        load_task_split("copa", "train", "yesno", tmp_path)
    with pytest.raises(DHRDInputError, match="WiC/train.jsonl: file not found"):
        load_task_split("wic", "train", "yesno", tmp_path)


def _rows(task, labels, groups, candidates=None):
    candidates = candidates or [None] * len(labels)
    return [Example(f"r{i}", task, "t", label, g, c) for i, (label, g, c) in enumerate(zip(labels, groups, candidates))]


def test_copa_accuracy_from_higher_p_yes():
    rows = _rows("copa", [1, 0, 0, 1], ["a", "a", "b", "b"], ["choice1", "choice2", "choice1", "choice2"])
    # example a: P(yes) 0.6 vs 0.7 -> picks choice2 (wrong); example b: 0.2 vs 0.3 -> choice2 (right),
    # even though every row alone would be called "No" in b
    probs = np.array([[0.4, 0.6], [0.3, 0.7], [0.8, 0.2], [0.7, 0.3]])
    assert task_metrics("copa", rows, probs, "yesno")["accuracy"] == 50.0


def test_cb_macro_f1_over_three_relations():
    relations = ["entailment", "contradiction", "neutral"]
    rows = []
    gold = ["entailment", "contradiction", "neutral", "entailment"]
    predicted = ["entailment", "contradiction", "entailment", "entailment"]
    probs = []
    for k, (g, p) in enumerate(zip(gold, predicted)):
        for r in relations:
            rows.append(Example(f"{k}{r}", "cb", "t", int(r == g), f"g{k}", r))
            probs.append([0.5, 0.9] if r == p else [0.5, 0.1])
    metrics = task_metrics("cb", rows, np.array(probs), "yesno")
    # per class F1: entailment 0.8, contradiction 1.0, neutral 0.0 -> macro 60
    assert metrics["accuracy"] == 75.0 and metrics["f1"] == 60.0 and metrics["score"] == 67.5
    assert metrics["examples"] == 4


def test_multirc_f1a_and_exact_match():
    rows = _rows("multirc", [1, 0, 1, 1], ["q1", "q1", "q2", "q2"])
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # q1 all right, q2 one miss
    metrics = task_metrics("multirc", rows, probs, "yesno")
    assert metrics["em"] == 50.0
    assert metrics["f1a"] == pytest.approx(100 * 2 * 1.0 * (2 / 3) / (1 + 2 / 3), abs=1e-3)


def test_superglue_average_takes_pairs_first():
    rows = _rows("rte", [1, 0], ["a", "b"]) + _rows("multirc", [1, 0], ["q", "q"])
    probs = np.array([[0.2, 0.8], [0.3, 0.7], [0.1, 0.9], [0.9, 0.1]])
    metrics = evaluate_rows(rows, probs, "yesno")
    assert metrics["tasks"]["rte"]["score"] == 50.0
    assert metrics["tasks"]["multirc"]["score"] == 100.0
    assert metrics["score"] == 75.0


@pytest.mark.integration
def test_official_files_load(shared_superglue):
    from dhrd.data.boolq import boolq_carved

    expected = {
        "cb": (56, 168),
        "copa": (100, 200),
        "rte": (277, 277),
        "wic": (638, 638),
        "wsc": (104, 104),
        "boolq": (3270, 3270),
        "multirc": (953, 4848),
    }
    if boolq_carved(shared_superglue):  # no BoolQ train here: validation is the held-out part of val.jsonl
        expected["boolq"] = (1000, 1000)
    for task, (examples, rows) in expected.items():
        split = load_task_split(task, "validation", "yesno", shared_superglue)
        assert len(split) == rows, task
        assert len({e.group for e in split}) == examples, task
        assert all(e.label in (0, 1) for e in split)
    wic = load_task_split("wic", "validation", "yesno", shared_superglue)[0].text
    assert "*class*" in wic  # the target word is highlighted


def test_hub_rows_map_to_the_official_schema(monkeypatch, tmp_path):
    """Where a hub is reachable, ``super_glue`` rows (class-label ints, flat MultiRC) read like the jsonl."""
    import datasets

    hub = {
        "cb": [{"premise": "p", "hypothesis": "h", "label": 2, "idx": 0}],
        "multirc": [
            {
                "paragraph": "Ann came.",
                "question": "Who?",
                "answer": a,
                "label": lab,
                "idx": {"paragraph": 0, "question": 0, "answer": k},
            }
            for k, (a, lab) in enumerate([("Ann", 1), ("Bob", 0)])
        ],
        "wsc": [
            {
                "text": "Ann said she came",
                "span1_index": 0,
                "span2_index": 2,
                "span1_text": "Ann",
                "span2_text": "she",
                "label": 1,
                "idx": 0,
            }
        ],
    }
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return hub[config]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setenv("DHRD_DATA_DIR", str(tmp_path / "empty"))
    cb = load_task_split("cb", "validation", "native")
    assert cb[0].label == 2 and calls[-1] == ("super_glue", "cb", "validation")
    multirc = load_task_split("multirc", "train", "yesno")
    assert [e.label for e in multirc] == [1, 0] and multirc[0].group == multirc[1].group
    wsc = load_task_split("wsc", "train", "yesno")
    assert wsc[0].label == 1 and "*she*" in wsc[0].text


def test_offline_hub_failure_is_one_clear_error(monkeypatch, tmp_path):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setenv("DHRD_DATA_DIR", str(tmp_path))
    with pytest.raises(DHRDInputError, match="BoolQ train split: .* the Hugging Face hub could not provide it"):
        load_task_split("boolq", "train")


# ------------------------------------------------------------------------------------------ BoolQ carve
def _boolq_val(root, sizes: dict[str, int]) -> list[dict]:
    rows = []
    for title, n in sizes.items():
        for k in range(n):
            rows.append({"question": f"is {title} {k}", "passage": f"{title} -- Text {k}.", "label": k % 2 == 0})
    rows = [{**row, "idx": i} for i, row in enumerate(rows)]
    write_jsonl(root / "BoolQ" / "val.jsonl", rows)
    return rows


def _title(row: dict) -> str:
    return row["passage"].split(" -- ", 1)[0]


@pytest.fixture
def offline_hub(monkeypatch):
    """The hub check answers "no train split" at once, without touching ``datasets``."""
    from dhrd.data import boolq

    monkeypatch.setattr(boolq, "_hub_boolq_train", lambda: None)
    monkeypatch.setattr(boolq, "BOOLQ_HELD_OUT", 5)


def test_boolq_carve_is_disjoint_by_title_and_deterministic(offline_hub, tmp_path):
    from dhrd.data.boolq import boolq_carved
    from dhrd.data.task_splits import read_records

    rows = _boolq_val(tmp_path, {"Ant": 3, "Bee": 2, "Cat": 4, "Dog": 1, "Eel": 2, "Fox": 3})
    train, train_source = read_records(TASKS["boolq"], "train", tmp_path)
    validation, source = read_records(TASKS["boolq"], "validation", tmp_path)
    assert boolq_carved(tmp_path) and source == train_source
    tag = "[carved BoolQ train/validation split, not comparable to the paper]"
    assert source == f"{tmp_path / 'BoolQ' / 'val.jsonl'} {tag}"
    assert not {_title(r) for r in train} & {_title(r) for r in validation}
    assert len(validation) >= 5 and len(train) + len(validation) == len(rows)
    assert sorted(r["idx"] for r in train + validation) == list(range(len(rows)))
    assert read_records(TASKS["boolq"], "val", tmp_path)[0] == validation  # "val" is the same split
    assert read_records(TASKS["boolq"], "train", tmp_path)[0] == train  # the same carve every time
    examples = load_task_split("boolq", "train", "yesno", tmp_path)
    assert [e.source_idx for e in examples] == [r["idx"] for r in train]
    with pytest.raises(DHRDInputError, match=r"BoolQ/test.jsonl: file not found"):
        read_records(TASKS["boolq"], "test", tmp_path)


def test_boolq_carve_needs_titles(offline_hub, tmp_path):
    write_jsonl(tmp_path / "BoolQ" / "val.jsonl", [{"question": "q", "passage": "no title here", "label": True}])
    with pytest.raises(DHRDInputError, match=r"BoolQ/val.jsonl: row 1: field 'passage': expected 'title -- passage'"):
        load_task_split("boolq", "validation", "yesno", tmp_path)


def test_boolq_with_a_train_file_is_not_carved(monkeypatch, tmp_path):
    from dhrd.data import boolq, task_splits

    def no_hub():
        raise AssertionError("the hub must not be asked when train.jsonl exists")

    monkeypatch.setattr(boolq, "_hub_boolq_train", no_hub)
    rows = _boolq_val(tmp_path, {"Ant": 3, "Bee": 2})
    write_jsonl(tmp_path / "BoolQ" / "train.jsonl", rows[:2])
    validation, source = task_splits.read_records(TASKS["boolq"], "validation", tmp_path)
    assert validation == rows and source == str(tmp_path / "BoolQ" / "val.jsonl")
    assert len(task_splits.read_records(TASKS["boolq"], "train", tmp_path)[0]) == 2
    assert not boolq.boolq_carved(tmp_path)


def test_boolq_train_from_the_hub_keeps_the_whole_validation_file(monkeypatch, tmp_path):
    from dhrd.data import boolq, task_splits

    hub_rows = [{"question": "q", "passage": "Hub -- text", "label": True, "idx": 0}]
    monkeypatch.setattr(boolq, "_hub_boolq_train", lambda: (hub_rows, "hub:super_glue/boolq/train"))
    rows = _boolq_val(tmp_path, {"Ant": 3, "Bee": 2})
    assert task_splits.read_records(TASKS["boolq"], "train", tmp_path) == (hub_rows, "hub:super_glue/boolq/train")
    assert task_splits.read_records(TASKS["boolq"], "validation", tmp_path)[0] == rows
    assert not boolq.boolq_carved(tmp_path)


def test_the_hub_is_asked_once_for_both_splits(monkeypatch, tmp_path):
    import datasets

    from dhrd.data import boolq, task_splits

    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr(boolq, "BOOLQ_HELD_OUT", 2)
    boolq._hub_boolq_train.cache_clear()
    try:
        _boolq_val(tmp_path, {"Ant": 3, "Bee": 2, "Cat": 1})
        for split in ("train", "validation", "train"):
            assert "carved" in task_splits.read_records(TASKS["boolq"], split, tmp_path)[1]
        assert boolq.boolq_carved(tmp_path) and calls == [("super_glue", "boolq")]
    finally:
        boolq._hub_boolq_train.cache_clear()  # the next test asks the real (offline) hub again


@pytest.mark.integration
def test_shared_boolq_carve_sizes(shared_superglue):
    from dhrd.data.boolq import BOOLQ_CARVE_NOTE, boolq_carved
    from dhrd.data.task_splits import read_records

    if not boolq_carved(shared_superglue):
        pytest.skip("BoolQ is not carved here (the data or the hub has its train split)")
    train, _ = read_records(TASKS["boolq"], "train", shared_superglue)
    validation, source = read_records(TASKS["boolq"], "validation", shared_superglue)
    assert len(validation) >= 1000 and len(train) + len(validation) == 3270
    assert (len(train), len(validation)) == (2270, 1000)  # pinned: a changed carve is a changed benchmark
    assert not {_title(r) for r in train} & {_title(r) for r in validation}
    assert "carved" in source and "not comparable" in BOOLQ_CARVE_NOTE


# ------------------------------------------------------------------------------------- task rules
# Each rule lives on the task (``task_base.Task``): changing it there changes every place that reads it.
def _with_rule(monkeypatch, name: str, **rule):
    from dataclasses import replace

    monkeypatch.setitem(TASKS, name, replace(TASKS[name], **rule))


def test_zero_shot_cot_rule_is_read_from_the_task(monkeypatch):
    from dhrd.cot.baseline import zero_shot_queries
    from dhrd.reproduction import ReproduceArguments, plan

    args = ReproduceArguments(tasks=["rte", "multirc"], seeds=[1], methods=["pooled", "cot-zero-shot"])
    assert [c.name for c in plan(args) if c.kind == "cot"] == ["cot rte cot-zero-shot s1"]
    _with_rule(monkeypatch, "rte", zero_shot_cot=False)
    _with_rule(monkeypatch, "multirc", zero_shot_cot=True)
    assert [c.name for c in plan(args) if c.kind == "cot"] == ["cot multirc cot-zero-shot s1"]
    with pytest.raises(DHRDInputError, match="zero-shot CoT does not support rte"):
        zero_shot_queries("rte", tokenizer=None)


def test_answer_words_are_read_from_the_task(monkeypatch, superglue_dir):
    from dhrd.teacher.prompts import TASK_ANSWERS, task_items

    assert [item.answer for item in task_items("rte", superglue_dir)[0][:2]] == ["No", "Yes"]
    _with_rule(monkeypatch, "rte", answers={"Entailed": "entailment", "Not entailed": "not_entailment"})
    items, _ = task_items("rte", superglue_dir)
    assert [(item.label, item.answer) for item in items[:2]] == [
        ("not_entailment", "Not entailed"),
        ("entailment", "Entailed"),
    ]
    assert list(TASK_ANSWERS["rte"]) == ["Entailed", "Not entailed"]  # what the teacher may answer with


def test_candidate_rows_rule_decides_choice_metrics_and_floor(monkeypatch):
    from dhrd.data.task_metrics import majority_floor
    from dhrd.data.tasks import choices_by_group

    rows = _rows("copa", [1, 0, 0, 1, 1, 0], list("aabbcc"), ["choice1", "choice2"] * 3)
    probs = np.array([[0.4, 0.6], [0.3, 0.7], [0.8, 0.2], [0.7, 0.3], [0.1, 0.9], [0.2, 0.8]])
    assert choices_by_group(rows, probs) == {"a": "choice2", "b": "choice2", "c": "choice1"}
    assert task_metrics("copa", rows, probs, "yesno")["accuracy"] == pytest.approx(66.6667)
    assert majority_floor("copa", rows, "yesno", 2)["predictor"] == "always choice1"
    _with_rule(monkeypatch, "copa", candidate_rows=False)  # now every row is scored alone
    assert choices_by_group(rows, probs) == {}
    assert task_metrics("copa", rows, probs, "yesno")["accuracy"] == 50.0
    assert majority_floor("copa", rows, "yesno", 2)["predictor"].startswith("always label")


def test_per_answer_rule_decides_scoring(monkeypatch):
    from dhrd.data.task_metrics import label_metrics

    rows = _rows("rte", [1, 0, 1, 1], ["q1", "q1", "q2", "q2"])
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert label_metrics("rte", ["entailment"], ["entailment"])["score"] == 100.0
    _with_rule(monkeypatch, "rte", per_answer=True, metrics=("f1a", "em"))
    assert task_metrics("rte", rows, probs, "yesno")["em"] == 50.0
    with pytest.raises(DHRDInputError, match="RTE is scored per answer"):
        label_metrics("rte", ["entailment"], ["entailment"])


def test_a_task_lays_out_its_records_for_classifier_and_teacher(superglue_dir):
    """One record, both views: the classifier's rows and the teacher's items come from the same Task."""
    from dhrd.teacher.prompts import task_items

    cb = TASKS["cb"]
    record = {"premise": "Ann came.", "hypothesis": "Ann is here", "label": "neutral", "idx": 7}
    rows = cb.examples(record, "yesno", "f.jsonl", 1)
    assert [(r.id, r.candidate, r.label, r.source_idx) for r in rows] == [
        ("cb-7#entailment", "entailment", 0, 7),
        ("cb-7#contradiction", "contradiction", 0, 7),
        ("cb-7#neutral", "neutral", 1, 7),
    ]
    (native,) = cb.examples(record, "native", "f.jsonl", 1)
    assert native.label == 2 and native.text == "Premise: Ann came.\nHypothesis: Ann is here"
    (item,) = cb.teacher_items(record, "f.jsonl", 1)
    assert (item.idx, item.label, item.answer) == (7, "neutral", "Neither")
    assert item.input.endswith("Question: Does the premise entail the hypothesis, contradict it, or neither?")
    # MultiRC: one teacher item per answer, keyed as its classifier row's source_idx
    items, _ = task_items("multirc", superglue_dir, "validation")
    rows = load_task_split("multirc", "validation", "yesno", superglue_dir)
    assert [i.idx for i in items] == [r.source_idx for r in rows]
    assert [i.answer for i in items] == ["Yes" if r.label else "No" for r in rows]


def test_teacher_refuses_a_label_the_task_does_not_have(tmp_path):
    write_jsonl(
        tmp_path / "COPA" / "train.jsonl",
        [{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 2}],
    )
    from dhrd.teacher.prompts import task_items

    with pytest.raises(DHRDInputError, match="row 1: field 'label': label 2 is not one of the task's"):
        task_items("copa", tmp_path)


@pytest.mark.parametrize(
    ("folder", "task", "record", "said"),
    [
        ("WSC", "wsc", {"text": "Ann said she was", "target": {"span1_text": "Ann"}, "label": True}, "span2"),
        ("RTE", "rte", {"premise": 7, "hypothesis": "b", "label": "entailment"}, "AttributeError"),
        ("MultiRC", "multirc", {"passage": "not an object", "idx": 0}, "AttributeError"),
    ],
)
def test_a_malformed_record_is_one_line_naming_its_row(tmp_path, folder, task, record, said):
    """Fields no specific check names still stop with the file and row, never a traceback."""
    write_jsonl(tmp_path / folder / "val.jsonl", [record])
    with pytest.raises(DHRDInputError, match=rf"val.jsonl: row 1: not a {folder} record \(.*{said}"):
        load_task_split(task, "validation", data_dir=tmp_path)


def test_own_data_is_a_task_that_answers_for_its_rows(tmp_path):
    """The user's own rows are a task object with capabilities of its own (no name tests at the call sites):
    the rows read from a file carry it, and metrics, statistics, reports and messages ask it."""
    from dhrd.data.inputs import Columns, load_file_examples
    from dhrd.data.tasks import OWN_DATA, chooses_candidate, task_rules
    from dhrd.inference.class_report import class_report
    from dhrd.stats import check_against_metrics, has_macro_f1, per_answer

    assert task_rules("custom") is OWN_DATA and task_rules("cb") is TASKS["cb"]
    assert OWN_DATA.own_data and not any(task.own_data for task in TASKS.values())
    assert not (OWN_DATA.per_answer or OWN_DATA.candidate_rows)
    assert OWN_DATA.zero_shot_cot  # prompted with the teacher's view of a row and the label names as answers
    assert not (has_macro_f1("custom") or per_answer("custom") or chooses_candidate("custom"))
    assert OWN_DATA.not_comparable() is None and TASKS["cb"].not_comparable() is None
    path = tmp_path / "reviews.jsonl"
    write_jsonl(path, [{"text": f"film {i}", "label": ("bad", "good")[i % 2]} for i in range(4)])
    rows = load_file_examples(path, Columns(), ("bad", "good"), True)
    assert {task_rules(e.task) for e in rows} == {OWN_DATA}
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])  # the third row wrong
    metrics = task_metrics(rows[0].task, rows, probs, "native")
    assert metrics["score"] == metrics["accuracy"] == 75.0 and "macro_f1" in metrics
    assert not check_against_metrics(rows[0].task, rows, probs, "native")
    assert class_report(rows, probs, "native", ("bad", "good"))[rows[0].task]["unit"] == "example"
