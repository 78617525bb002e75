"""Opt-in inspection: let the trained reasoning head write a rationale for an input.

Slow (it decodes token by token) and never used for the prediction, which always comes from the pooled
head. It needs the reasoning head saved at training time (``--keep-reasoning-head``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from .data import ANSWER_PREFIX, REASON_PREFIX
from .errors import DHRDInputError
from .evaluation import predict_proba
from .modeling import find_model_dir, load_classifier
from .runtime import autocast, bf16_supported, device

REASONING_HEAD_FILE = "reasoning_head.safetensors"


def save_reasoning_head(weight: torch.Tensor, model_dir: Path) -> Path:
    """The LM head's weight beside the classifier (for a tied head, the trained embedding matrix)."""
    path = Path(model_dir) / REASONING_HEAD_FILE
    save_file({"lm_head.weight": weight.detach().float().cpu().contiguous()}, str(path))
    return path


def reasoning_lm(model_path: str | Path):
    """The trained backbone with its LM head on top: a causal LM for ``generate``."""
    directory = find_model_dir(model_path)
    head = directory / REASONING_HEAD_FILE
    if not head.is_file():
        raise DHRDInputError(
            f"{head}: no reasoning head was kept with this model; train with --method dhrd --keep-reasoning-head"
        )
    classifier, tokenizer = load_classifier(directory)
    config = classifier.config.text_config
    config.tie_word_embeddings = False
    lm = AutoModelForCausalLM.from_config(config)
    lm.base_model.load_state_dict(classifier.model.state_dict())
    lm.get_output_embeddings().weight.data.copy_(load_file(str(head))["lm_head.weight"])
    return lm.eval(), classifier, tokenizer


@torch.inference_mode()
def explain(model_path: str | Path, texts: list[str], max_new_tokens: int = 128, batch_size: int = 4) -> list[dict]:
    """For each input: the rationale and answer the reasoning head writes, beside the classifier's prediction."""
    lm, classifier, tokenizer = reasoning_lm(model_path)
    probs = predict_proba(classifier, tokenizer, texts, progress=False)
    names = [classifier.config.id2label[i] for i in range(classifier.config.num_labels)]
    lm.to(device())
    results = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the last real token
    try:
        for start in range(0, len(texts), batch_size):
            prompts = [t + REASON_PREFIX for t in texts[start : start + batch_size]]
            batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device())
            with autocast(bf16_supported()):
                out = lm.generate(
                    **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            for i, row in enumerate(out[:, batch["input_ids"].shape[1] :]):
                text = tokenizer.decode(row, skip_special_tokens=True)
                rationale, _, answer = text.partition(ANSWER_PREFIX.strip())
                k = start + i
                results.append(
                    {
                        "input": texts[k],
                        "rationale": rationale.strip(),
                        "reasoning_head_answer": answer.strip().split("\n")[0] or None,
                        "prediction": names[int(probs[k].argmax())],
                        "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs[k])},
                    }
                )
    finally:
        tokenizer.padding_side = side
    return results
