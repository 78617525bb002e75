"""The shared SmolLM2-135M-Instruct on a few dozen real CB examples (skipped when ../shared is absent)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dhrd import DHRDTrainingArguments, evaluate, load_classifier, predict_proba, train
from dhrd.tasks import load_task_split

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cb_run(tmp_path_factory, smollm2, shared_superglue):
    out = tmp_path_factory.mktemp("cb-smollm2")
    args = DHRDTrainingArguments(
        output_dir=str(out),
        task="cb",
        data_dir=str(shared_superglue),
        backbone=smollm2,
        head="linear",
        max_train_examples=24,
        max_eval_examples=12,
        num_train_epochs=1,
        per_device_train_batch_size=8,
        max_length=384,
        truncation="left",
    )
    return out, train(args)


def test_smollm2_pads_with_its_eos_token(smollm2):
    from dhrd.modeling import load_tokenizer

    tokenizer = load_tokenizer(smollm2)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # why pooling must never look at pad_token_id


def test_pooled_baseline_trains_and_evaluates_on_real_cb(cb_run, shared_superglue):
    out, result = cb_run
    metrics = result.metrics
    assert metrics["train_rows"] == 24 * 3 and metrics["tasks"]["cb"]["examples"] == 12
    # the saved score is the model's: its own validation probabilities, scored independently, give it back
    saved = json.loads((out / "validation-predictions.json").read_text())
    rows = load_task_split("cb", "validation", "yesno", shared_superglue)
    by_id = {e.id: e for e in rows}
    from dhrd.tasks import evaluate_rows

    rescored = evaluate_rows([by_id[i] for i in saved["ids"]], np.asarray(saved["probs"]), "yesno")
    assert rescored["tasks"]["cb"]["accuracy"] == pytest.approx(metrics["tasks"]["cb"]["accuracy"], abs=1e-3)
    assert json.loads((out / "metrics.json").read_text())["tasks"] == metrics["tasks"]
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]


def test_real_model_round_trip_through_pipeline(cb_run, shared_superglue):
    out, result = cb_run
    model, tokenizer = load_classifier(out)
    texts = [e.text for e in load_task_split("cb", "validation", "yesno", shared_superglue)[:6]]
    ours = predict_proba(model, tokenizer, texts, batch_size=3, bf16=False, progress=False)
    code = (
        "import json, sys\n"
        "sys.modules['dhrd'] = None\n"
        "from transformers import pipeline\n"
        "clf = pipeline('text-classification', model=sys.argv[1], top_k=None, device='cpu')\n"
        "results = clf(json.loads(sys.argv[2]), truncation=True)\n"
        "print(json.dumps([{d['label']: d['score'] for d in r} for r in results]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out / "model"), json.dumps(texts)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = [[r["No"], r["Yes"]] for r in json.loads(done.stdout.strip().splitlines()[-1])]
    torch.testing.assert_close(torch.tensor(theirs), torch.tensor(ours), atol=1e-4, rtol=1e-3)


def test_evaluate_saved_model_on_real_cb(cb_run, shared_superglue):
    out, result = cb_run
    metrics = evaluate(out, max_examples=12)
    assert metrics["tasks"]["cb"]["examples"] == 12 and metrics["rows"] == 36
    # the saved model gives back the probabilities training scored it with, on the same rows
    saved = json.loads((out / "validation-predictions.json").read_text())
    by_id = {e.id: e for e in load_task_split("cb", "validation", "yesno", shared_superglue)}
    model, tokenizer = load_classifier(out)
    probs = predict_proba(model, tokenizer, [by_id[i].text for i in saved["ids"]], progress=False)
    # both under bf16 autocast, training's through the LoRA adapters and this one through the merged weights:
    # rounding differs by up to about 0.01 (measured); a wrong or unsaved head is off by far more
    np.testing.assert_allclose(probs, np.asarray(saved["probs"]), atol=0.03)
