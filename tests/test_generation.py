"""The batched decoding loop the local teacher and the CoT engine share, on the tiny Llama."""

from __future__ import annotations

import pytest

from dhrd.modeling import load_causal_lm
from dhrd.teacher.generation import chat_prompt_ids, generate_batches

TEXTS = ["Passage: Ann said", "The museum is in Bilbao and the", "Question:", "the man turned on the tap water", "Ann"]


@pytest.fixture(scope="module")
def lm(tiny_backbone):
    model, tokenizer = load_causal_lm(str(tiny_backbone))
    return model.eval(), tokenizer


def _decode(lm, prompts, batch_size, **kwargs) -> dict:
    model, tokenizer = lm
    outputs = {}
    for batch in generate_batches(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=10, **kwargs):
        assert len(batch.indices) == len(batch.outputs) <= batch_size and batch.seconds > 0
        outputs.update(zip(batch.indices, batch.outputs))
    return outputs


def test_batches_are_length_sorted_left_padded_and_match_batch_one(lm):
    prompts = [lm[1](t)["input_ids"] for t in TEXTS]
    batches = list(generate_batches(*lm, prompts, batch_size=2, max_new_tokens=10))
    by_length = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    assert [i for b in batches for i in b.indices] == by_length  # similar lengths share a batch
    one, two = _decode(lm, prompts, 1), _decode(lm, prompts, 2)
    assert sorted(one) == list(range(len(TEXTS)))
    # left padding: every row continues from its own last token, so a batch decodes as the rows do alone
    assert [one[i].text for i in range(len(TEXTS))] == [two[i].text for i in range(len(TEXTS))]
    assert all(o.new_tokens == 10 and not o.stopped for o in one.values())  # the untrained model never stops


def test_sampling_is_seeded(lm):
    prompts = [lm[1](t)["input_ids"] for t in TEXTS]
    sampled = {seed: _decode(lm, prompts, 2, do_sample=True, temperature=1.5, seed=seed) for seed in (3, 3, 4)}
    again = _decode(lm, prompts, 2, do_sample=True, temperature=1.5, seed=3)
    assert [again[i].text for i in range(5)] == [sampled[3][i].text for i in range(5)]
    assert [sampled[4][i].text for i in range(5)] != [sampled[3][i].text for i in range(5)]
    greedy = _decode(lm, prompts, 2)
    assert [greedy[i].text for i in range(5)] != [sampled[3][i].text for i in range(5)]


def test_output_is_cut_at_the_first_end_of_sequence_token(lm):
    """A chat model's own end-of-turn token (in its generation config) ends an answer like the tokenizer's EOS:
    each row is cut at its first one, which counts as a generated token; a row without one ran out of tokens.
    The model is scripted, since the untrained tiny one repeats one token and never stops."""
    import types

    import torch

    _, tokenizer = lm
    words = tokenizer("Ann said it rained", add_special_tokens=False)["input_ids"]
    end_of_turn, eos = 5, tokenizer.eos_token_id
    assert end_of_turn not in words and eos not in words
    written = [
        words[:2] + [end_of_turn] + words[2:3] + [eos],  # stops at the end-of-turn token
        words[:4] + [eos],  # stops at the tokenizer's EOS
        words[:3] + words[:2],  # runs out of new tokens
    ]

    class Scripted:
        device = torch.device("cpu")
        generation_config = types.SimpleNamespace(eos_token_id=[end_of_turn])

        def generate(self, input_ids, attention_mask, eos_token_id, pad_token_id, **kwargs):
            Scripted.asked = eos_token_id, pad_token_id, attention_mask.tolist()
            return torch.cat([input_ids, torch.tensor(written)], 1)

    prompts = [[7, 8, 9], [7], [7, 8]]
    (batch,) = generate_batches(Scripted(), tokenizer, prompts, batch_size=3, max_new_tokens=5)
    assert batch.indices == [1, 2, 0]  # shortest first
    assert Scripted.asked == (sorted({end_of_turn, eos}), tokenizer.pad_token_id, [[0, 0, 1], [0, 1, 1], [1, 1, 1]])
    first, second, third = batch.outputs
    assert (first.text, first.new_tokens, first.stopped) == (tokenizer.decode(words[:2]), 3, True)
    assert (second.text, second.new_tokens, second.stopped) == (tokenizer.decode(words[:4]), 5, True)
    assert (third.text, third.new_tokens, third.stopped) == (tokenizer.decode(words[:3] + words[:2]), 5, False)


def test_nothing_is_decoded_before_the_caller_asks(lm, monkeypatch):
    """Each batch is yielded as it finishes, so a caller can save it before the next one is decoded."""
    model, tokenizer = lm
    calls = []
    real = model.generate

    def counting(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(**kwargs)

    monkeypatch.setattr(model, "generate", counting)
    prompts = [tokenizer(t)["input_ids"] for t in TEXTS]
    batches = generate_batches(model, tokenizer, prompts, batch_size=2, max_new_tokens=3)
    assert calls == []
    next(batches)
    assert calls == [2]
    assert sum(len(b.indices) for b in batches) == 3 and calls == [2, 2, 1]


def test_chat_prompt_ids_use_the_template_when_there_is_one(lm):
    _, tokenizer = lm
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ann said"}]
    assert chat_prompt_ids(tokenizer, messages) == tokenizer("Be brief.\n\nAnn said\n")["input_ids"]
    tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = (
        "{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    text = "<|endoftext|>system: Be brief.\n<|endoftext|>user: Ann said\nassistant:"
    ids = chat_prompt_ids(tokenizer, messages)
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.eos_token_id) == 2  # the template's own special tokens, read as such
