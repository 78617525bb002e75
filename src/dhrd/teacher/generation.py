"""Batched decoding with transformers' ``generate``: the one loop the local teacher and the CoT engine share.

Prompts are sorted by length so that a batch holds similar lengths (little padding), left-padded so that every
row continues from its own last token, and decoded with the KV cache. Each batch is seeded from ``seed`` and
its place in the sorted order, so a rerun samples the same answers. A row's output is cut at its first
end-of-sequence token: chat models end a turn with a token of their own (``<|im_end|>``) besides the
tokenizer's EOS. ``generate_batches`` yields each batch as it finishes, so that a caller can save it before
the next one is decoded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch


@dataclass
class Output:
    text: str  # the decoded new tokens, up to the first end-of-sequence token, special tokens dropped
    new_tokens: int  # the tokens kept, plus the end-of-sequence token where the row stopped on one
    stopped: bool  # False: the row ran out of ``max_new_tokens``


@dataclass
class Batch:
    indices: list[int]  # the positions of its prompts in the caller's list
    outputs: list[Output]  # in the order of ``indices``
    seconds: float  # the batch's wall time: every request in it waited this long


def chat_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Chat messages as prompt token ids: through the tokenizer's chat template (whose text carries its own
    special tokens) where it has one, else the messages' contents joined by blank lines, tokenised like any
    other input."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer("\n\n".join(m["content"] for m in messages) + "\n")["input_ids"]


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends an answer: the model's generation config's and the tokenizer's EOS."""
    configured = model.generation_config.eos_token_id
    eos = set(configured if isinstance(configured, list) else [configured]) | {tokenizer.eos_token_id}
    return sorted(t for t in eos if t is not None)


def _left_padded(prompts: list[list[int]], pad: int, on: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return {"input_ids": ids.to(on), "attention_mask": mask.to(on)}


def _cut(tokens: list[int], eos: set[int], tokenizer) -> Output:
    end = next((k for k, t in enumerate(tokens) if t in eos), None)
    kept = tokens if end is None else tokens[:end]
    return Output(tokenizer.decode(kept, skip_special_tokens=True), len(kept) + (end is not None), end is not None)


def generate_batches(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    *,
    batch_size: int,
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> Iterator[Batch]:
    """Decode ``prompts`` (token ids) in length-sorted batches of ``batch_size``, yielding each finished batch
    with its prompts' positions. Greedy unless ``do_sample``; ``top_p`` None samples from the whole
    distribution. Nothing is decoded before the caller asks for the next batch."""
    eos = eos_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    # None overrides whatever the model's generation config would otherwise add (top_k 50, its temperature)
    sampling = {"do_sample": do_sample, "temperature": temperature if do_sample else None, "top_k": None}
    sampling["top_p"] = top_p if do_sample else None
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        began = time.perf_counter()
        inputs = _left_padded([list(prompts[i]) for i in chunk], pad, model.device)
        torch.manual_seed(seed + start)
        with torch.inference_mode():
            out = model.generate(
                **inputs, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad, use_cache=True, **sampling
            )
        seconds = time.perf_counter() - began
        new = out[:, inputs["input_ids"].shape[1] :].tolist()
        yield Batch(chunk, [_cut(tokens, set(eos), tokenizer) for tokens in new], seconds)


__all__ = ["Batch", "Output", "chat_prompt_ids", "eos_token_ids", "generate_batches"]
