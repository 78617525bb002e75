"""The saved model's card (README.md) and no local path in what it saves; `dhrd push` is in test_hub.py."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import SHARED_GGUF, tiny_run, write_jsonl
from huggingface_hub import ModelCard

from dhrd import DHRDTrainingArguments, evaluate, load_classifier, predict, train
from dhrd.hub import model_card
from dhrd.modeling import hub_backbone_name, portable_spec

NAMES = "0=negative,1=positive"


def reviews(n: int, start: int = 0) -> list[dict]:
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    rows = range(start, start + n)
    return [{"id": f"r{k}", "text": f"the film was {words[k % 6]}", "label": int(k % 6 < 3)} for k in rows]


@pytest.fixture(scope="module")
def task_run(tmp_path_factory, tiny_backbone, superglue_dir):
    """A pooled CB model with the paper's MLP head (saved with its modeling code), trained for seconds on the tiny
    files."""
    out = tmp_path_factory.mktemp("card") / "cb"
    settings = tiny_run(tiny_backbone, superglue_dir, learning_rate=1e-3, seed=7, head="mlp")
    result = train(DHRDTrainingArguments(**settings, output_dir=str(out)))
    return out, result.metrics


@pytest.fixture(scope="module")
def file_run(tmp_path_factory, tiny_backbone):
    """A linear-head model on a user's JSONL files with named labels."""
    root = tmp_path_factory.mktemp("card-files")
    training = write_jsonl(root / "data" / "reviews-train.jsonl", reviews(12))
    validation = write_jsonl(root / "data" / "reviews-val.jsonl", reviews(6, 12))
    args = DHRDTrainingArguments(
        train_file=str(training), validation_file=str(validation), id_column="id", label_map=NAMES,
        backbone=str(tiny_backbone), head="linear", num_train_epochs=1, per_device_train_batch_size=4, bf16=False,
        max_length=64, output_dir=str(root / "run"),
    )  # fmt: skip
    result = train(args)
    return root / "run", result.metrics, validation


def strings(value):
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def assert_no_local_path(model_dir: Path, *local: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    absolute = [s for s in strings(config) if s.startswith(("/", "~", "./", "../")) or "/tmp" in s]
    assert absolute == [], absolute
    card = (model_dir / "README.md").read_text()
    for path in local:
        for text in (json.dumps(config), card):
            assert str(path) not in text and str(path.resolve()) not in text, path
    assert "/tmp/" not in card and str(Path.home()) not in card


def test_the_card_of_a_task_model(task_run, tiny_backbone, superglue_dir):
    out, metrics = task_run
    card = ModelCard.load(out / "model" / "README.md")
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.datasets) == ("transformers", "text-classification", [
        "aps/super_glue"
    ])  # fmt: skip
    assert "dhrd" in data.tags and data.base_model is None  # a local backbone with no hub id: not claimed as one
    # model-index: every CB metric of the training run's validation pass, in percent
    scored = {(r.dataset_config, r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    cb = metrics["tasks"]["cb"]
    assert scored == {
        ("cb", "validation", "f1"): round(cb["f1"], 2),
        ("cb", "validation", "accuracy"): round(cb["accuracy"], 2),
        ("cb", "validation", "score"): round(cb["score"], 2),
    }
    text = card.text
    assert "https://arxiv.org/abs/2509.21487" in text and "Dual-Head Reasoning Distillation" in text
    assert f"| validation | training run's evaluation | cb | macro-F1 {cb['f1']:.2f}" in text
    for row in ["| method | pooled |", "| learning rate | 0.001 (cosine", "| LoRA | r 16, alpha 32, dropout 0.1",
                "| head / pooling | mlp / last |", "| seed | 7 |", "alpha 0.0, beta 1.0"]:  # fmt: skip
        assert row in text, row
    assert "**Labels** (in `id2label` order): `No`, `Yes`" in text
    # the MLP head needs its saved modeling code: the transformers snippet says so; the dhrd one too
    assert 'from_pretrained("<user>/<model>", trust_remote_code=True)' in text
    assert "dhrd predict --model model" in text and "load_classifier" in text
    assert_no_local_path(out / "model", out, tiny_backbone, superglue_dir)


def test_a_task_model_still_evaluates_in_its_run_and_elsewhere(task_run, superglue_dir, tmp_path):
    out, metrics = task_run
    # in its run directory it reads the data folder it trained on (kept in train_args.json, not config.json)
    assert evaluate(out, bf16=False)["tasks"] == metrics["tasks"]
    moved = tmp_path / "elsewhere"
    shutil.copytree(out / "model", moved)
    model, _ = load_classifier(moved)
    assert model.config.dhrd["data"]["data_dir"] is None and model.config.dhrd["data"]["tasks"] == ["cb"]
    assert evaluate(moved, data_dir=str(superglue_dir), bf16=False)["tasks"] == metrics["tasks"]


def test_the_card_of_a_file_model(file_run, tiny_backbone):
    run_dir, metrics, validation = file_run
    model_dir = run_dir / "model"
    card = ModelCard.load(model_dir / "README.md")
    assert card.data.datasets is None and "superglue" not in card.data.tags
    assert {(r.dataset_type, r.dataset_name) for r in card.data.eval_results} == {("json", "reviews-val.jsonl")}
    text = card.text
    # a linear head is the backbone's own checkpoint: a plain pipeline, no custom code
    assert 'pipeline("text-classification", model="<user>/<model>", top_k=None)' in text
    assert "trust_remote_code" not in text
    assert "`negative`, `positive`" in text and "The input is the `text` column." in text
    config = json.loads((model_dir / "config.json").read_text())
    data = config["dhrd"]["data"]
    assert (data["train_file"], data["validation_file"]) == ("reviews-train.jsonl", "reviews-val.jsonl")
    assert config["dhrd"]["backbone"] == tiny_backbone.name
    assert_no_local_path(model_dir, run_dir, validation.parent, tiny_backbone)
    # the model predicts from anywhere: a file-trained model always takes --file
    moved = run_dir.parent / "copied"
    shutil.copytree(model_dir, moved)
    summary = predict(moved, run_dir.parent / "p.jsonl", file=str(validation), bf16=False, progress=False)
    assert summary.rows == 6


def test_evaluate_adds_its_scores_to_the_card(file_run):
    run_dir, _, validation = file_run
    scored = evaluate(run_dir, file=str(validation), output=run_dir / "model" / "eval-validation.json", bf16=False)
    card = ModelCard.load(run_dir / "model" / "README.md")
    accuracy = scored["tasks"]["custom"]["accuracy"]
    assert f"| validation | reviews-val.jsonl | custom | accuracy {accuracy:.2f}" in card.text
    assert ("custom", "reviews-val.jsonl", "accuracy", round(accuracy, 2)) in {
        (r.dataset_type, r.dataset_name, r.metric_type, r.metric_value) for r in card.data.eval_results
    }


def test_a_known_local_backbone_is_named_by_its_hub_id(task_run):
    """The shared SmolLM2 GGUF is HuggingFaceTB/SmolLM2-135M-Instruct: the card's base model and licence."""
    out, metrics = task_run
    assert hub_backbone_name(str(SHARED_GGUF)) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    converted = "/cache/dhrd/gguf/SmolLM2-135M-Instruct.Q4_1-0c0da883f6e714a9"  # its dequantised copy
    assert hub_backbone_name(converted) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_backbone_name("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert hub_backbone_name(str(out)) is None  # an existing local folder
    spec = portable_spec({"backbone": str(SHARED_GGUF), "data": {"data_dir": str(out), "train_file": None}})
    assert spec == {"backbone": "HuggingFaceTB/SmolLM2-135M-Instruct", "data": {"data_dir": None, "train_file": None}}
    config = json.loads((out / "model" / "config.json").read_text())
    settings = json.loads((out / "train_args.json").read_text())
    card = model_card(config, dict(settings, backbone=str(SHARED_GGUF)), metrics, model_id="me/cb")
    assert (card.data.base_model, card.data.license) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    assert 'from_pretrained("me/cb", trust_remote_code=True)' in card.text and "<user>" not in card.text
