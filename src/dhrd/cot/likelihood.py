"""Answers chosen by likelihood: a CoT system that always answers, the way lm-evaluation-harness scores a choice.

A small model's reasoning often ends before it writes an answer the parser can read (SmolLM2-135M reaches
no ``Answer:`` on most CB examples within its greedy budget). Scoring those outputs as wrong compares the
classifier with a system that answers nothing. Instead, after the model's own reasoning, the answer cue it
was asked to end with is appended (``"\\nAnswer:"`` zero-shot, ``"\\nFinal Answer:"`` after CoT fine-tuning,
as it was trained) and every answer word is scored by the log-likelihood the same model gives it there; the
likeliest answer is the output's answer.

Only outputs the parser cannot read are scored: an answer the model wrote is the system's answer, as a reader
of its output would take it, and a model that does answer pays for no extra pass. In the candidate-row
formats (the fine-tuned CB and COPA rows, one Yes/No decode per candidate) an unparsed row chooses Yes or No
this way, and an example whose rows say Yes to none or to several candidates takes the candidate with the
largest log P(Yes) - log P(No) (among those said Yes to, where there are any).

The scoring runs on the engine that decoded, inside the timed pass: its seconds count in the system's
examples/s, and a scored request's latency is its decode batch's plus its scoring batch's wall time.
"""

from __future__ import annotations

import inspect
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import torch

Pair = tuple[list[int], list[int]]  # (context ids, continuation ids)


def cued_text(text: str, cue: str) -> tuple[str, str]:
    """The output with the answer cue after it, and the whitespace that goes before the answer word.

    The cue's trailing whitespace moves to the answer (``" Entailment"``, ``"\\nYes"``: a word is tokenised
    with the space or newline before it, as it is in running text), and an output that already ends with
    the cue ("... Final Answer:") is not given it twice."""
    stripped, cue_text = text.rstrip(), cue.rstrip()
    separator = cue[len(cue_text) :]
    if stripped.endswith(cue_text.strip()):
        return stripped, separator
    return stripped + cue_text, separator


def scoring_pairs(query, text: str, tokenizer) -> list[Pair]:
    """(prompt + output + cue, answer word) as token ids, one pair per answer word of ``query``, in the order of
    ``query.answers``. The pieces are tokenised separately and concatenated, like the prompt and the decode."""
    context_text, separator = cued_text(text, query.cue)
    context = list(query.prompt_ids) + tokenizer(context_text, add_special_tokens=False)["input_ids"]
    return [(context, tokenizer(separator + word, add_special_tokens=False)["input_ids"]) for word in query.answers]


def continuation_logprobs(lm, pairs: Sequence[Pair], pad_id: int) -> list[float]:
    """log P(continuation | context), summed over the continuation's tokens, of every pair.

    Each distinct context (a query's answer words share one) runs once, left-padded in one batch (positions
    counted from each row's first real token), keeping its KV cache and only its last position's logits: they
    give every continuation's first token. The continuations' other tokens then run on that cache, repeated
    per continuation, so the reasoning is read once per query, not once per answer word."""
    contexts = list(dict.fromkeys(tuple(context) for context, _ in pairs))
    rows = torch.tensor([contexts.index(tuple(context)) for context, _ in pairs])
    ids, mask = _left_padded(contexts, pad_id)
    on = lm.device
    with torch.inference_mode():
        out = lm(
            input_ids=ids.to(on),
            attention_mask=mask.to(on),
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(on),
            use_cache=True,
            logits_to_keep=1,
        )
        first = out.logits[:, -1].float().log_softmax(-1).cpu()[rows]
        cache = out["cache"] if "cache" in out else out["past_key_values"]
        rest = _after_context(lm, cache, mask, rows, [k for _, k in pairs], pad_id)
    totals = []
    for row, (_, continuation) in enumerate(pairs):
        total = float(first[row, continuation[0]])
        total += sum(float(rest[row, j - 1, token]) for j, token in enumerate(continuation[1:], 1))
        totals.append(total)
    return totals


def _cache_argument(lm) -> str:
    """What ``forward`` calls the cache: ``cache`` in recent transformers, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _left_padded(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
        mask[row, width - len(sequence) :] = 1
    return ids, mask


def _after_context(lm, cache, mask: torch.Tensor, rows: torch.Tensor, continuations: list[list[int]], pad_id: int):
    """Log-probabilities (row, j, vocabulary) of what follows each continuation's token j, all but its last token
    run after its context's cache (right-padded: a pad after a row's tokens changes none of them); None when
    every continuation is one token."""
    width = max(map(len, continuations)) - 1
    if width == 0:
        return None
    ids = torch.full((len(continuations), width), pad_id, dtype=torch.long)
    tail = torch.zeros((len(continuations), width), dtype=torch.long)
    for row, continuation in enumerate(continuations):
        ids[row, : len(continuation) - 1] = torch.tensor(continuation[:-1], dtype=torch.long)
        tail[row, : len(continuation) - 1] = 1
    cache.batch_select_indices(rows.to(lm.device))  # each continuation's own copy of its context's cache
    lengths = mask.sum(-1)[rows]
    on = lm.device
    logits = lm(
        input_ids=ids.to(on),
        attention_mask=torch.cat([mask[rows], tail], dim=-1).to(on),
        position_ids=(lengths[:, None] + torch.arange(width)).to(on),
        use_cache=True,
        **{_cache_argument(lm): cache},
    ).logits
    return logits.float().log_softmax(-1).cpu()


def rows_to_score(queries: Sequence, said: Sequence[str | None]) -> list[int]:
    """The rows whose answer the likelihood decides (``said``: each row's parsed label, None where unparsed):
    every unparsed row, and every row of a candidate example whose text does not say Yes to exactly one
    candidate (its answer is then the likeliest Yes)."""
    by_example: dict[str, list[int]] = defaultdict(list)
    for i, query in enumerate(queries):
        if query.candidate is not None:
            by_example[query.group].append(i)
    undecided = {
        group
        for group, rows in by_example.items()
        if any(said[i] is None for i in rows) or sum(said[i] == "Yes" for i in rows) != 1
    }
    return [
        i
        for i, query in enumerate(queries)
        if said[i] is None or (query.candidate is not None and query.group in undecided)
    ]


def answer_likelihoods(
    engine, tokenizer, queries: Sequence, decoded: Sequence, rows: Sequence[int], batch_size: int
) -> tuple[dict[int, dict[str, float]], list]:
    """Each of ``rows``' answer words' log-likelihood after its output and cue (row -> word -> log P), scored by
    ``engine.score`` ``batch_size`` rows at a time (every answer word of a row in the same batch, rows sorted by
    length); and ``decoded`` with each scored row's latency grown by its scoring batch's wall time."""
    decoded = list(decoded)
    pairs = {i: scoring_pairs(queries[i], decoded[i].text, tokenizer) for i in rows}
    order = sorted(rows, key=lambda i: len(pairs[i][0][0]))
    scores: dict[int, dict[str, float]] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        began = time.perf_counter()
        totals = iter(engine.score([pair for i in chunk for pair in pairs[i]]))
        seconds = time.perf_counter() - began
        for i in chunk:
            scores[i] = {word: next(totals) for word in queries[i].answers}
            decoded[i] = replace(decoded[i], seconds=decoded[i].seconds + seconds)
    return scores, decoded


__all__ = ["answer_likelihoods", "continuation_logprobs", "cued_text", "rows_to_score", "scoring_pairs"]
