"""Loading a model never runs Python code found in its directory unless --trust-remote-code asks for it."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
from conftest import tiny_run
from typer.testing import CliRunner

import dhrd.cot.explain
import dhrd.inference.evaluation
import dhrd.inference.prediction
import dhrd.modeling
import dhrd.training.prepare
import dhrd.training.run
import dhrd.training.trainer
import dhrd.training.training_args
from dhrd.cli.commands import app
from dhrd.errors import DHRDInputError
from dhrd.modeling import build_classifier, load_classifier, save_classifier

TEXT = "Ann said it never rained on day 3."
EVIL_TOKENIZER = "tokenization_evil.EvilTokenizer"


@pytest.fixture(scope="module")
def saved_models(tiny_backbone, tmp_path_factory):
    """A classifier saved in each format: DHRD's own (mlp head, modeling code beside it) and native (linear)."""
    root = tmp_path_factory.mktemp("trust-models")
    models = {}
    for kind, head in (("dhrd", "mlp"), ("native", "linear")):
        classifier, tokenizer, _ = build_classifier(str(tiny_backbone), ["No", "Yes"], head, "last", seed=1)
        models[kind] = save_classifier(classifier, tokenizer, root / kind)
    return models


def _payload(marker) -> str:
    return f"from pathlib import Path\nPath({str(marker)!r}).write_text(__name__)\n"


def _evil_copy(source, target, marker):
    """The saved model with Python files that write ``marker`` when imported."""
    shutil.copytree(source, target)
    payload = _payload(marker)
    (target / "tokenization_evil.py").write_text(
        payload + "from transformers import PreTrainedTokenizerFast\n\n\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    (target / "configuration_evil.py").write_text(
        payload + "from transformers import PretrainedConfig\n\n\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
    )
    (target / "modeling_evil.py").write_text(
        payload + "from transformers import PreTrainedModel\n\n\nclass EvilModel(PreTrainedModel):\n    pass\n"
    )
    return target


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("kind", ["dhrd", "native"])
def test_tokenizer_code_in_the_model_directory_never_runs(saved_models, tmp_path, kind):
    marker = tmp_path / "tokenizer-code-ran"
    directory = _evil_copy(saved_models[kind], tmp_path / "model", marker)
    _edit_json(directory / "tokenizer_config.json", auto_map={"AutoTokenizer": [None, EVIL_TOKENIZER]})

    model, tokenizer = load_classifier(directory)

    assert not marker.exists(), marker.read_text()
    assert type(tokenizer).__name__ != "EvilTokenizer"
    _, reference = load_classifier(saved_models[kind])
    assert tokenizer(TEXT)["input_ids"] == reference(TEXT)["input_ids"]


@pytest.mark.parametrize("kind", ["dhrd", "native"])
def test_model_code_in_the_model_directory_never_runs(saved_models, tmp_path, kind):
    marker = tmp_path / "model-code-ran"
    directory = _evil_copy(saved_models[kind], tmp_path / "model", marker)
    auto_map = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForSequenceClassification": "modeling_evil.EvilModel",
        "AutoTokenizer": [None, EVIL_TOKENIZER],
    }
    _edit_json(directory / "config.json", auto_map=auto_map)
    for shipped in directory.glob("*_dhrd.py"):  # the DHRD code saved beside the weights is never imported either
        shipped.write_text(_payload(marker) + shipped.read_text())

    model, tokenizer = load_classifier(directory)

    assert not marker.exists(), marker.read_text()
    assert type(model).__module__ == "dhrd.hf.modeling_dhrd"  # the installed package's class
    assert type(tokenizer).__name__ != "EvilTokenizer"
    assert model.config.id2label == {0: "No", 1: "Yes"}


def test_a_tokenizer_that_exists_only_as_code_is_a_clear_error(saved_models, tmp_path):
    marker = tmp_path / "tokenizer-code-ran"
    directory = _evil_copy(saved_models["dhrd"], tmp_path / "model", marker)
    _edit_json(
        directory / "tokenizer_config.json",
        tokenizer_class="EvilTokenizer",
        auto_map={"AutoTokenizer": [None, EVIL_TOKENIZER]},
    )
    with pytest.raises(DHRDInputError, match="--trust-remote-code"):
        load_classifier(directory)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["dhrd", "native"])
def test_trust_remote_code_is_passed_through_when_asked(saved_models, monkeypatch, kind):
    calls = []

    def recorder(auto):
        real = auto.from_pretrained

        def from_pretrained(*args, **kwargs):
            calls.append((auto.__name__, kwargs.get("trust_remote_code")))
            return real(*args, **{**kwargs, "trust_remote_code": False})  # the test itself runs no model code

        return from_pretrained

    for auto in (dhrd.modeling.AutoTokenizer, dhrd.modeling.AutoModelForSequenceClassification):
        monkeypatch.setattr(auto, "from_pretrained", recorder(auto))

    load_classifier(saved_models[kind])
    load_classifier(saved_models[kind], trust_remote_code=True)

    expected = ["AutoTokenizer"] if kind == "dhrd" else ["AutoModelForSequenceClassification", "AutoTokenizer"]
    assert calls == [(name, False) for name in expected] + [(name, True) for name in expected]


class Stop(Exception):
    pass


def _predict_modules() -> list:
    """Where ``predict`` is defined."""
    return [dhrd.inference.prediction]


def _stop_and_record(record):
    def stop(*args, **kwargs):
        record.append(kwargs.get("trust_remote_code"))
        raise Stop

    return stop


@pytest.mark.parametrize("trust", [False, True])
def test_python_api_threads_the_flag(saved_models, superglue_dir, tiny_backbone, tmp_path, monkeypatch, trust):
    seen = []
    # evaluate and predict load through engines.load_inference_model and explain through
    # modeling.reasoning_lm: both call modeling's own load_classifier
    monkeypatch.setattr(dhrd.modeling, "load_classifier", _stop_and_record(seen))
    monkeypatch.setattr(dhrd.training.prepare, "resolve_backbone", _stop_and_record(seen))
    (saved_models["dhrd"] / "reasoning_head.safetensors").touch()  # explain's check for the reasoning head
    run = dhrd.training.training_args.DHRDTrainingArguments(
        **tiny_run(tiny_backbone, superglue_dir, output_dir=str(tmp_path / "run")), trust_remote_code=trust
    )
    predicts = [module.predict for module in _predict_modules()]
    calls = [
        lambda: dhrd.inference.evaluation.evaluate(saved_models["dhrd"], trust_remote_code=trust),
        *[
            lambda f=f: f(saved_models["dhrd"], tmp_path / "p.jsonl", task="cb", trust_remote_code=trust)
            for f in predicts
        ],
        lambda: dhrd.cot.explain.explain(saved_models["dhrd"], [TEXT], trust_remote_code=trust),
        lambda: dhrd.training.trainer.prepare_run(run),
    ]
    try:
        for call in calls:
            with pytest.raises(Stop):
                call()
    finally:
        (saved_models["dhrd"] / "reasoning_head.safetensors").unlink()
    assert seen == [trust] * len(calls)


@pytest.mark.parametrize("trust", [False, True])
def test_cli_flag(saved_models, superglue_dir, tiny_backbone, tmp_path, monkeypatch, trust):
    seen = []
    monkeypatch.setattr(dhrd.inference.evaluation, "evaluate", _stop_and_record(seen))
    for module in _predict_modules():
        monkeypatch.setattr(module, "predict", _stop_and_record(seen))
    monkeypatch.setattr(dhrd.cot.explain, "explain", _stop_and_record(seen))

    def fake_train(args):
        seen.append(args.trust_remote_code)
        return SimpleNamespace(is_main_process=False)

    monkeypatch.setattr(dhrd.training.run, "train", fake_train)
    flag = ["--trust-remote-code"] if trust else []
    model = str(saved_models["dhrd"])
    runner = CliRunner()
    for args in (
        ["evaluate", "--model", model, "--output", str(tmp_path / "m.json")],
        ["predict", "--model", model, "--output", str(tmp_path / "p.jsonl"), "--task", "cb"],
        ["explain", "--model", model, "--text", TEXT],
        ["train", "--backbone", str(tiny_backbone), "--data-dir", str(superglue_dir), "--output-dir", str(tmp_path)],
    ):
        result = runner.invoke(app, args + flag)
        assert result.exit_code in (0, 1), result.output  # 1: the Stop raised by the stand-ins
    assert seen == [trust] * 4
