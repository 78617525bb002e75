"""Opt-in inspection: let the trained reasoning head write a rationale for an input.

Slow (it decodes token by token) and never used for the prediction, which always comes from the pooled
head. It needs the reasoning head saved at training time (``--keep-reasoning-head``).
"""

from __future__ import annotations

from pathlib import Path

from ..data.inputs import ANSWER_PREFIX
from ..inference.evaluation import predict_proba
from ..modeling import reasoning_lm


def explain(
    model_path: str | Path,
    texts: list[str],
    max_new_tokens: int = 128,
    batch_size: int = 4,
    trust_remote_code: bool = False,
) -> list[dict]:
    """For each input: the rationale and answer the reasoning head writes, beside the classifier's prediction.
    It decodes greedily from ``x + "Reasoning:"``, tokenised as in training, through the CoT engine."""
    from .baseline import Query, TransformersEngine, greedy_settings, reasoning_prompts

    lm, classifier, tokenizer = reasoning_lm(model_path, trust_remote_code=trust_remote_code)
    probs = predict_proba(classifier, tokenizer, texts, progress=False)
    names = [classifier.config.id2label[i] for i in range(classifier.config.num_labels)]
    queries = [Query(str(k), ids, {n: n for n in names}) for k, ids in enumerate(reasoning_prompts(texts, tokenizer))]
    decoded = TransformersEngine(lm, tokenizer).run(
        queries, greedy_settings(max_new_tokens), batch_size, progress=False
    )
    results = []
    for k, out in enumerate(decoded):
        rationale, _, answer = out.text.partition(ANSWER_PREFIX.strip())
        results.append(
            {
                "input": texts[k],
                "rationale": rationale.strip(),
                "reasoning_head_answer": answer.strip().split("\n")[0] or None,
                "prediction": names[int(probs[k].argmax())],
                "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs[k])},
            }
        )
    return results
