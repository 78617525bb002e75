"""Every backbone family the issue names: build, LoRA, native export, reload as plain transformers."""

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    Qwen2Config,
    Qwen3Config,
)

from dhrd.inference.evaluation import predict_proba
from dhrd.modeling import build_classifier, save_classifier
from dhrd.training.model_setup import apply_lora
from dhrd.training.training_args import DHRDTrainingArguments

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
CONFIGS = {
    "llama": lambda v: LlamaConfig(vocab_size=v, **SMALL),
    "qwen2": lambda v: Qwen2Config(vocab_size=v, **SMALL),
    "qwen3": lambda v: Qwen3Config(vocab_size=v, head_dim=8, **SMALL),
    "gemma3_text": lambda v: Gemma3TextConfig(vocab_size=v, head_dim=8, sliding_window=16, **SMALL),
    "gpt2": lambda v: GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=256),
}
TEXTS = ["Passage:\nAnn came.\nQuestion:\nWho came?", "the good movie", "bad"]


@pytest.mark.parametrize("family", list(CONFIGS))
def test_backbone_family(family, tiny_backbone, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    torch.manual_seed(0)
    config = CONFIGS[family](len(tokenizer))
    config.pad_token_id = config.eos_token_id = tokenizer.eos_token_id
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")

    classifier, tokenizer, _ = build_classifier(str(tmp_path / "lm"), ["No", "Yes"], head="linear", seed=1)
    with torch.no_grad():
        classifier.score.weight.normal_(0, 0.5)
    expected = predict_proba(classifier, tokenizer, TEXTS, batch_size=3, bf16=False, progress=False)

    peft_model = apply_lora(classifier, DHRDTrainingArguments())
    lora_layers = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A")]
    assert lora_layers and not any(".score." in n for n in lora_layers)
    merged = peft_model.merge_and_unload()  # untrained LoRA (B = 0): a no-op
    directory = save_classifier(merged, tokenizer, tmp_path / "clf")
    native = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    assert type(native).__name__.endswith("ForSequenceClassification") and "DHRD" not in type(native).__name__
    got = predict_proba(native, tokenizer, TEXTS, batch_size=1, bf16=False, progress=False)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), atol=1e-5, rtol=1e-4)
