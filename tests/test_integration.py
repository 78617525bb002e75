"""The shared SmolLM2-135M-Instruct on a few dozen real CB examples (skipped when ../shared is absent)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dhrd import DHRDTrainingArguments, evaluate, load_classifier, predict_proba, train
from dhrd.data.task_splits import load_task_split

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


def test_pooled_baseline_trains_and_evaluates_on_real_cb(cb_run, shared_superglue, smollm2):
    out, result = cb_run
    metrics = result.metrics
    assert metrics["train_rows"] == 24 * 3 and metrics["tasks"]["cb"]["examples"] == 12
    # the saved score is the model's: its own validation probabilities, scored independently, give it back
    saved = json.loads((out / "validation-predictions.json").read_text())
    rows = load_task_split("cb", "validation", "yesno", shared_superglue)
    by_id = {e.id: e for e in rows}
    from dhrd.data.task_metrics import evaluate_rows

    rescored = evaluate_rows([by_id[i] for i in saved["ids"]], np.asarray(saved["probs"]), "yesno")
    assert rescored["tasks"]["cb"]["accuracy"] == pytest.approx(metrics["tasks"]["cb"]["accuracy"], abs=1e-3)
    assert json.loads((out / "metrics.json").read_text())["tasks"] == metrics["tasks"]
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    # training moved the weights: the merged LoRA update changed every adapted projection of the backbone, and
    # the classification head is not the one it was initialised with
    from safetensors.torch import load_file

    from dhrd.modeling import build_classifier

    saved_weights = load_file(str(out / "model" / "model.safetensors"))
    backbone = load_file(str(Path(smollm2) / "model.safetensors"))
    for layer in (0, 29):
        for name in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"):
            key = f"model.layers.{layer}.{name}.weight"
            assert (saved_weights[key] - backbone[key]).abs().max() > 1e-4, key
    assert torch.equal(saved_weights["model.embed_tokens.weight"], backbone["model.embed_tokens.weight"])
    initial, _, _ = build_classifier(smollm2, ["No", "Yes"], "linear", seed=42)  # train()'s default seed
    assert (saved_weights["score.weight"] - initial.score.weight.detach()).abs().max() > 1e-4


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
    # and dhrd evaluate on exactly training's validation examples (a data folder holding only them) gives back
    # training's score, except where that rounding flips a near tie between two relations' P(Yes)
    chosen = {by_id[i].group for i in saved["ids"]}
    records = [json.loads(x) for x in (shared_superglue / "CB" / "val.jsonl").read_text().splitlines()]
    subset = [r for r in records if f"cb-{r['idx']}" in chosen]
    (out / "subset" / "CB").mkdir(parents=True, exist_ok=True)
    (out / "subset" / "CB" / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in subset))
    again = evaluate(out, data_dir=str(out / "subset"))
    assert again["rows"] == 36 and again["tasks"]["cb"]["examples"] == 12
    # its metrics are CB's official ones (sklearn here) of the saved model's probabilities on those rows
    from sklearn.metrics import f1_score

    relations = ["entailment", "contradiction", "neutral"]
    gold = [r["label"] for r in subset]
    said = [relations[int(np.argmax(row))] for row in np.asarray(probs)[:, 1].reshape(12, 3)]
    assert [saved["ids"][3 * k] for k in range(12)] == [f"cb-{r['idx']}#entailment" for r in subset]
    assert again["tasks"]["cb"]["accuracy"] == pytest.approx(100 * np.mean([s == g for s, g in zip(said, gold)]))
    assert again["tasks"]["cb"]["f1"] == pytest.approx(100 * f1_score(gold, said, labels=relations, average="macro"))
    yes = np.asarray(saved["probs"])[:, 1].reshape(12, 3)  # the rows of an example are its three relations
    top2 = np.sort(yes, axis=1)[:, -2:]
    near_ties = int(((top2[:, 1] - top2[:, 0]) < 0.03).sum())
    if near_ties == 0:
        assert again["tasks"]["cb"] == pytest.approx(result.metrics["tasks"]["cb"], abs=1e-3)
    else:  # each flipped example moves accuracy by 100/12 points
        assert abs(again["tasks"]["cb"]["accuracy"] - result.metrics["tasks"]["cb"]["accuracy"]) <= near_ties * 8.34


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * weight


def _rope_adjacent_pairs(x: np.ndarray, base: float) -> np.ndarray:
    """llama.cpp's rotary embedding for LLaMA (rope type "normal"): dimensions (2i, 2i+1) rotate together, the
    layout the GGUF's Q and K weights are stored for (transformers rotates halves and un-permutes them)."""
    n, _, d = x.shape
    angles = np.arange(n)[:, None] * base ** (-np.arange(0, d, 2) / d)[None, :]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = even * cos - odd * sin, even * sin + odd * cos
    return out


def numpy_llama_logits(reader, ids: list[int]) -> np.ndarray:
    """A LLaMA forward pass in float64 numpy, straight from the GGUF file: its metadata and its tensors as the gguf
    package dequantises them, names and layouts as llama.cpp reads them."""
    from gguf.quants import dequantize

    weights = {t.name: dequantize(t.data, t.tensor_type).astype(np.float64) for t in reader.tensors}

    def meta(key):
        return reader.fields[f"llama.{key}"].contents()

    heads, kv_heads = meta("attention.head_count"), meta("attention.head_count_kv")
    eps, base = meta("attention.layer_norm_rms_epsilon"), meta("rope.freq_base")
    h = weights["token_embd.weight"][ids]
    n, dim = h.shape
    head_dim = dim // heads
    causal = np.triu(np.full((n, n), -np.inf), 1)
    for layer in range(meta("block_count")):
        w = {k.split(".", 2)[2]: v for k, v in weights.items() if k.startswith(f"blk.{layer}.")}
        x = _rms_norm(h, w["attn_norm.weight"], eps)
        q = _rope_adjacent_pairs((x @ w["attn_q.weight"].T).reshape(n, heads, head_dim), base)
        k = _rope_adjacent_pairs((x @ w["attn_k.weight"].T).reshape(n, kv_heads, head_dim), base)
        v = (x @ w["attn_v.weight"].T).reshape(n, kv_heads, head_dim)
        k, v = np.repeat(k, heads // kv_heads, 1), np.repeat(v, heads // kv_heads, 1)  # grouped-query attention
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(head_dim) + causal
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        h = h + np.einsum("hqk,khd->qhd", scores, v).reshape(n, dim) @ w["attn_output.weight"].T
        x = _rms_norm(h, w["ffn_norm.weight"], eps)
        gate = x @ w["ffn_gate.weight"].T
        h = h + (gate / (1 + np.exp(-gate)) * (x @ w["ffn_up.weight"].T)) @ w["ffn_down.weight"].T
    h = _rms_norm(h, weights["output_norm.weight"], eps)
    return h @ weights.get("output.weight", weights["token_embd.weight"]).T  # tied: the embeddings


def test_gguf_conversion_matches_a_numpy_llama_forward(smollm2):
    """The model dhrd converts the shared GGUF into gives the logits of an independent LLaMA forward pass over
    the GGUF's own dequantised tensors, and its tokenizer the GGUF's own tokens."""
    from conftest import SHARED_GGUF
    from gguf import GGUFReader

    from dhrd.modeling import load_causal_lm, load_tokenizer

    reader = GGUFReader(str(SHARED_GGUF))
    tokenizer = load_tokenizer(smollm2)
    ids = tokenizer("The capital of France is Paris, and the capital of Spain is")["input_ids"]
    vocabulary = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokenizer.convert_ids_to_tokens(ids) == [vocabulary[i] for i in ids]
    reference = numpy_llama_logits(reader, ids)
    lm, _ = load_causal_lm(smollm2)
    with torch.no_grad():
        logits = lm(torch.tensor([ids])).logits[0].double().numpy()
    assert logits.shape == reference.shape == (len(ids), 49152)
    np.testing.assert_allclose(logits, reference, atol=2e-3, rtol=0)  # fp32 vs fp64 over 30 layers: ~5e-5 seen
    assert tokenizer.decode([int(reference[-1].argmax())]) == " Madrid"  # the weights are the real model's
