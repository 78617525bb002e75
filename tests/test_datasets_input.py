"""`datasets` datasets as input (--dataset): a real save_to_disk directory trains, evaluates, predicts and gets
rationales exactly as a file does; a ClassLabel names the labels; bad input is one line and exit code 2."""

import csv
import json

import datasets
import pytest
from conftest import write_jsonl
from typer.testing import CliRunner

from dhrd.cli.commands import app
from dhrd.data.datasets_input import dataset_name, dataset_split, open_dataset
from dhrd.data.inputs import DataSpec
from dhrd.data.selection import sample_examples
from dhrd.errors import DHRDInputError

runner = CliRunner()
WORDS = ["good", "great", "fine", "bad", "awful", "poor"]
# not alphabetical: the ClassLabel's order must survive (sorted, it would be negative, positive)
NAMES = ["positive", "negative"]


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def reviews(n: int, start: int = 0, labelled: bool = True) -> dict:
    """Columns of a sentiment split: ClassLabel 0 positive, 1 negative; -1 (datasets' "no label") unlabelled."""
    ks = range(start, start + n)
    return {
        "sentence": [f"the film was {WORDS[k % 6]}" for k in ks],
        "label": [int(k % 6 >= 3) if labelled else -1 for k in ks],
    }


FEATURES = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=NAMES)})


def save(path, **splits) -> str:
    dataset = datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(columns, features=FEATURES) for name, columns in splits.items()}
    )
    dataset.save_to_disk(str(path))
    return str(path)


@pytest.fixture
def sst(tmp_path) -> str:
    return save(tmp_path / "sst", train=reviews(12), validation=reviews(6, 100), test=reviews(4, 200, labelled=False))


def test_a_classlabel_names_the_labels_in_its_own_order(sst):
    spec = DataSpec(dataset=sst, text_column="sentence")
    spec.validate()
    assert spec.label_map == {"0": "positive", "1": "negative"}  # as --label-names 0=positive,1=negative would
    assert spec.label_names() == ("positive", "negative")
    rows = spec.split("train", spec.label_names())
    assert [e.label for e in rows[:6]] == [0, 0, 0, 1, 1, 1]
    assert [e.source_idx for e in rows[:3]] == [1, 2, 3]  # keyed by 1-based row number, as a file's rows
    assert rows[0].text == "the film was good"
    assert len(spec.split("validation", spec.label_names())) == 6
    assert spec.to_dict()["dataset"] == "sst"  # the directory's name, not its absolute path
    # --label-names still names the values where given
    named = DataSpec(dataset=sst, text_column="sentence", label_map="1=bad,0=good")
    named.validate()
    assert named.label_names() == ("bad", "good")


def test_a_cap_reads_only_the_rows_the_sample_keeps(sst):
    spec = DataSpec(dataset=sst, text_column="sentence")
    spec.validate()
    names = spec.label_names()
    whole = spec.split("train", names)
    for seed in (1, 2, 3):
        capped = spec.split("train", names, max_examples=5, seed=seed)
        assert [e.id for e in capped] == [e.id for e in sample_examples(whole, 5, seed)]
        assert [e.text for e in capped] == [e.text for e in sample_examples(whole, 5, seed)]


def test_without_a_validation_split_the_test_split_is_evaluated(tmp_path):
    path = save(tmp_path / "imdb-like", train=reviews(6), test=reviews(3, 51))
    spec = DataSpec(dataset=path, text_column="sentence")
    spec.validate()
    rows = spec.split("validation", spec.label_names())
    assert [e.text for e in rows] == ["the film was bad", "the film was awful", "the film was poor"]


def test_a_hub_name_goes_to_load_dataset_with_its_configuration(monkeypatch, sst):
    asked = []

    def load_dataset(name, config):
        asked.append((name, config))
        return datasets.load_from_disk(sst)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    found = dataset_split("glue", "train", "sst2")
    assert asked == [("glue", "sst2")] and len(found) == 12
    assert str(found) == "dataset glue split train" and dataset_name("glue") == "glue"


def test_train_evaluate_and_predict_from_a_saved_dataset(tiny_backbone, sst, tmp_path):
    common = ["--no-bf16", "--max-length", "64"]
    code, output = run(
        "train", "--dataset", sst, "--text-column", "sentence", "--backbone", tiny_backbone,
        "--output-dir", tmp_path / "run", "--epochs", "1", "--batch-size", "4", *common,
    )  # fmt: skip
    assert code == 0, output
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "positive", "1": "negative"}
    assert config["dhrd"]["data"]["dataset"] == "sst" and config["dhrd"]["data"]["text_column"] == "sentence"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["eval_rows"] == 6

    code, output = run("evaluate", "--model", tmp_path / "run", "--dataset", sst)  # the model's columns
    assert code == 0, output
    metrics = json.loads((tmp_path / "run" / "model" / "eval-validation.json").read_text())
    assert metrics["rows"] == 6 and metrics["split"] == "validation"
    assert metrics["dataset"] == "sst"  # the saved directory by its name, never its path
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "| validation | sst | custom |" in card  # scored by the dataset, by its name
    assert "None" not in card.replace("top_k=None", "")  # no missing setting printed (the pipeline's top_k is code)
    assert card.count("name: sst") == 1 and card.count("value: 50.0") <= 2  # one model-index entry per result
    code, output = run("evaluate", "--model", tmp_path / "run", "--dataset", sst, "--split", "dev")
    assert (code, output) == (2, f"error: dataset {sst}: no split 'dev' (its splits: train, validation, test)")

    out = tmp_path / "test.jsonl"
    code, output = run("predict", "--model", tmp_path / "run", "--dataset", sst, "--output", out)  # --split test
    assert code == 0, output
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["id"] for p in predictions] == [1, 2, 3, 4]
    assert all("label" not in p for p in predictions)  # ClassLabel -1: no label
    assert {p["prediction"] for p in predictions} <= set(NAMES)
    out = tmp_path / "validation.csv"
    code, output = run("predict", "--model", tmp_path / "run", "--dataset", sst, "--split", "validation",
                       "--output", out)  # fmt: skip
    assert code == 0, output
    labels = [row["label"] for row in csv.DictReader(out.read_text().splitlines())]
    assert labels == ["negative", "negative", "positive", "positive", "positive", "negative"]  # ClassLabel names


def test_rationales_import_from_a_dataset_and_train_dhrd_on_them(tiny_backbone, sst, tmp_path):
    from dhrd.data.inputs import ANSWER_PREFIX, REASON_PREFIX
    from dhrd.training.trainer import prepare_run
    from dhrd.training.training_args import DHRDTrainingArguments

    mine = write_jsonl(tmp_path / "mine.jsonl", [{"idx": k, "rationale": f"it says {WORDS[(k - 1) % 6]}"}
                                                 for k in range(1, 13)])  # fmt: skip
    code, output = run("rationales", "--dataset", sst, "--text-column", "sentence", "--import", mine,
                       "--output", tmp_path / "cache")  # fmt: skip
    assert code == 0, output
    assert f"train with: dhrd train --dataset {sst} --text-column sentence --method dhrd" in output
    cache = tmp_path / "cache" / "sst" / "train.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [r["label"] for r in rows[:6]] == ["positive"] * 3 + ["negative"] * 3  # named by the ClassLabel

    args = DHRDTrainingArguments(
        output_dir=str(tmp_path / "prep"), dataset=sst, text_column="sentence", backbone=str(tiny_backbone),
        method="dhrd", rationales=str(cache), bf16=False, max_length=64, num_train_epochs=1,
    )  # fmt: skip
    prepared = prepare_run(args)
    sequence = prepared.tokenizer.decode(prepared.trainer.train_dataset[3]["input_ids"])
    eos = prepared.tokenizer.eos_token
    assert sequence == f"the film was bad{REASON_PREFIX}it says bad{ANSWER_PREFIX}negative{eos}"  # a ClassLabel name


def test_bad_datasets_are_one_line_naming_the_dataset_split_and_row(tmp_path, sst):
    only_train = save(tmp_path / "only-train", train=reviews(6))
    single = tmp_path / "single"
    datasets.Dataset.from_dict(reviews(6), features=FEATURES).save_to_disk(str(single))
    unlabelled = save(tmp_path / "unlabelled", train=reviews(3) | {"label": [0, -1, 1]}, validation=reviews(3))
    model = ["--backbone", "unused", "--output-dir", tmp_path / "run"]
    cases = [
        (["train", "--dataset", only_train, "--text-column", "sentence", *model],
         f"error: dataset {only_train}: no split 'validation' (its splits: train)"),
        (["train", "--dataset", sst, *model],
         f"error: dataset {sst} split train: row 1: field 'text': missing column (columns: sentence, label)"),
        (["train", "--dataset", unlabelled, "--text-column", "sentence", *model],
         f"error: dataset {unlabelled} split train: row 2: field 'label': empty label"),
        (["train", "--dataset", str(single), "--text-column", "sentence", *model],
         f"error: dataset {single}: a single Dataset, not a DatasetDict"),
        (["train", "--dataset", "no-such-user/no-such-dataset", *model],
         "error: dataset no-such-user/no-such-dataset: not a save_to_disk directory and could not be loaded"),
        (["train", "--dataset", sst, "--train-file", tmp_path / "x.csv", "--validation-file", tmp_path / "y.csv",
          *model], "error: give --dataset or --train-file/--validation-file, not both"),
    ]  # fmt: skip
    for args, message in cases:
        code, output = run(*args)
        assert code == 2, (args, output)
        assert output.startswith(message), output
        assert "Traceback" not in output and len(output.splitlines()) == 1


def test_a_missing_split_is_named_before_any_model_loads(sst):
    with pytest.raises(DHRDInputError, match=r"dataset .*sst: no split 'dev' \(its splits: train, validation, test\)"):
        dataset_split(sst, "dev")
    with pytest.raises(DHRDInputError, match="a saved directory has no configurations"):
        open_dataset(sst, "sst2")
