import json
import subprocess
import sys

import pytest
import torch
from transformers import BertConfig, LlamaConfig

from dhrd.errors import DHRDInputError
from dhrd.hf.configuration_dhrd import DHRDConfig
from dhrd.hf.modeling_dhrd import DHRDForSequenceClassification
from dhrd.inference.evaluation import predict_proba
from dhrd.modeling import build_classifier, load_causal_lm, load_classifier, save_classifier

PAD = 0


def tiny_classifier(pooling="last", head="mlp", seed=0):
    torch.manual_seed(seed)
    text = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=PAD,
        eos_token_id=PAD,
    )
    config = DHRDConfig(text_config=text, num_labels=3, pooling=pooling, head=head, pad_token_id=PAD)
    return DHRDForSequenceClassification(config).eval()


def pad(rows, side):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
        ids[i, span], mask[i, span] = torch.tensor(r), 1
    return ids, mask


# PAD (0) also appears inside the inputs, as an EOS-that-pads does with SmolLM2.
ROWS = [[5, 9, 0, 12, 7], [3, 4], [8, 0, 6, 2, 11, 13, 1]]


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pooled_logits_do_not_depend_on_padding(pooling):
    model = tiny_classifier(pooling)
    singles = torch.cat([model(torch.tensor([r])).logits for r in ROWS])
    for side in ("right", "left"):
        ids, mask = pad(ROWS, side)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0) if side == "left" else None
        logits = model(ids, attention_mask=mask, position_ids=position_ids).logits
        torch.testing.assert_close(logits, singles, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pool_index_gives_the_input_only_logits(pooling, side):
    """Causality: pooling at the last input token of a training sequence (input + rationale + answer)
    equals an input-only pass, whichever side is padded. Tolerance: 1e-5 absolute in fp32."""
    model = tiny_classifier(pooling)
    inputs = [[5, 9, 12, 7], [3, 4, 10], [6]]
    longer = [r + [20, 21, 22, 23, 24, 25][: 6 - 2 * i] for i, r in enumerate(inputs)]
    ids, mask = pad(longer, side)
    offsets = [ids.shape[1] - len(r) if side == "left" else 0 for r in longer]
    pool_index = torch.tensor([o + len(r) - 1 for o, r in zip(offsets, inputs)])
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    extended = model(ids, attention_mask=mask, pool_index=pool_index, position_ids=position_ids).logits
    alone = torch.cat([model(torch.tensor([r])).logits for r in inputs])
    torch.testing.assert_close(extended, alone, atol=1e-5, rtol=1e-4)


def test_build_classifier_keeps_pretrained_weights(tiny_backbone):
    classifier, tokenizer, lm = build_classifier(str(tiny_backbone), ["No", "Yes"])
    reference, _ = load_causal_lm(str(tiny_backbone))
    for (name, a), (_, b) in zip(classifier.model.state_dict().items(), reference.base_model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert classifier.config.id2label == {0: "No", 1: "Yes"}
    assert lm.base_model is classifier.model  # the reasoning head's transformer is the classifier's
    assert not any(p.is_meta for p in classifier.parameters())


TEXTS = ["Passage:\nAnn said it never rained.\nQuestion:\nWhat is it?", "good movie", "the sun set on day 3 ."]

PLAIN_TRANSFORMERS = """
import json, sys
sys.modules["dhrd"] = None  # prove that dhrd is not needed
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
directory, remote = sys.argv[1], sys.argv[2] == "1"
model = AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=remote)
tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=remote)
classify = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None, device="cpu")
texts = json.loads(sys.argv[3])
out = [{d["label"]: d["score"] for d in result} for result in classify(texts)]
print(json.dumps({"class": type(model).__name__, "probs": out}))
"""


def _plain_transformers(directory, remote):
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_TRANSFORMERS, str(directory), "1" if remote else "0", json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("head", "pooling", "native"), [("linear", "last", True), ("mlp", "last", False), ("linear", "mean", False)]
)
def test_saved_model_loads_in_plain_transformers(tiny_backbone, tmp_path, head, pooling, native):
    classifier, tokenizer, _ = build_classifier(str(tiny_backbone), ["neg", "pos", "mixed"], head, pooling, seed=3)
    with torch.no_grad():
        for p in classifier.score.parameters():
            p.normal_(0, 0.5)  # a head that is not near-uniform, so the comparison means something
    expected = predict_proba(classifier, tokenizer, TEXTS, batch_size=2, bf16=False, progress=False)
    directory = save_classifier(classifier, tokenizer, tmp_path / "model", spec={"note": "x"})
    config = json.loads((directory / "config.json").read_text())
    if native:
        assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForSequenceClassification"]
        assert not list(directory.glob("*.py"))
    else:
        assert config["model_type"] == "dhrd" and (directory / "modeling_dhrd.py").is_file()
    result = _plain_transformers(directory, remote=not native)
    got = [[p[name] for name in ("neg", "pos", "mixed")] for p in result["probs"]]
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), atol=1e-5, rtol=1e-4)
    # and dhrd loads either format back to the same predictions
    reloaded, tok = load_classifier(directory)
    again = predict_proba(reloaded, tok, TEXTS, batch_size=3, bf16=False, progress=False)
    torch.testing.assert_close(torch.tensor(again), torch.tensor(expected), atol=1e-5, rtol=1e-4)
    assert reloaded.config.dhrd == {"note": "x"}


def test_not_a_decoder_only_backbone(tmp_path):
    BertConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    ).save_pretrained(tmp_path)
    with pytest.raises(DHRDInputError, match="not a decoder-only language model"):
        load_causal_lm(str(tmp_path))


def test_backbone_that_cannot_be_found(tmp_path):
    with pytest.raises(DHRDInputError, match="cannot be found"):
        load_causal_lm(str(tmp_path / "no-such-model"))
    with pytest.raises(DHRDInputError, match="GGUF file not found"):
        load_causal_lm(str(tmp_path / "missing.gguf"))


def test_reasoning_head_saved_beside_the_classifier_loads_as_a_causal_lm(tiny_backbone, tmp_path):
    """modeling keeps the reasoning head with the rest of model I/O: saved beside the classifier, loaded back
    on top of the classifier's backbone as a causal LM."""
    from dhrd.modeling import REASONING_HEAD_FILE, reasoning_lm, save_reasoning_head

    classifier, tokenizer, _ = build_classifier(str(tiny_backbone), ["neg", "pos"], "linear", "last", seed=3)
    directory = save_classifier(classifier, tokenizer, tmp_path / "run" / "model")
    with pytest.raises(DHRDInputError, match="no reasoning head was kept"):
        reasoning_lm(tmp_path / "run")
    weight = torch.randn_like(classifier.model.get_input_embeddings().weight)
    assert save_reasoning_head(weight, directory) == directory / REASONING_HEAD_FILE
    lm, loaded, _ = reasoning_lm(tmp_path / "run")  # a run directory finds its model/
    torch.testing.assert_close(lm.get_output_embeddings().weight, weight)
    torch.testing.assert_close(lm.get_input_embeddings().weight, loaded.model.get_input_embeddings().weight)
    ids = torch.tensor([[5, 9, 12, 7]])
    hidden = loaded.model(ids).last_hidden_state
    torch.testing.assert_close(lm(ids).logits, hidden @ weight.T, atol=1e-5, rtol=1e-4)
