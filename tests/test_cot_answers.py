"""A CoT system that always answers: outputs the parser cannot read answer by the likelihood of each answer word
after the answer cue, checked against a hand computation on the tiny model."""

import pytest
import torch
from conftest import SHARED_GGUF

from dhrd.cot.baseline import (
    Decoded,
    Query,
    TransformersEngine,
    decode_and_score,
    example_predictions,
    finetuned_queries,
    greedy_settings,
    parse_label,
    zero_shot_queries,
)
from dhrd.cot.likelihood import cued_text, rows_to_score
from dhrd.data.inputs import ANSWER_PREFIX
from dhrd.data.task_metrics import label_metrics
from dhrd.data.task_splits import load_task_split
from dhrd.modeling import load_causal_lm

YES_NO = {"No": "No", "Yes": "Yes"}


def by_hand(lm, context: list[int], answer: list[int]) -> float:
    """log P(answer | context): one unpadded sequence, every position's logits, the answer tokens' sum."""
    with torch.no_grad():
        logprobs = lm(torch.tensor([context + answer])).logits[0].float().log_softmax(-1)
    return sum(float(logprobs[len(context) + k - 1, token]) for k, token in enumerate(answer))


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def tiny_lm(tiny_backbone):
    lm, tokenizer = load_causal_lm(str(tiny_backbone))
    return TransformersEngine(lm, tokenizer, bf16=False), tokenizer


def test_batched_scoring_equals_one_sequence_at_a_time(tiny_lm):
    """Left padding, position ids and the kept last logits change nothing: each pair's sum equals its own pass."""
    engine, tokenizer = tiny_lm
    pairs = [
        (ids(tokenizer, "Ann said it rained.\nAnswer:"), ids(tokenizer, " Entailment")),
        (ids(tokenizer, "The museum is in Bilbao, the premise says, and so\nAnswer:"), ids(tokenizer, " No")),
        (ids(tokenizer, "Q:"), ids(tokenizer, "\nthe man turned on the tap water")),
    ]
    assert len({len(c) for c, _ in pairs}) == 3 and len({len(a) for _, a in pairs}) == 3
    expected = [by_hand(engine.lm, context, answer) for context, answer in pairs]
    assert engine.score(pairs) == pytest.approx(expected, abs=1e-4)


def test_unparsed_zero_shot_outputs_answer_by_likelihood(tiny_lm, superglue_dir):
    """The tiny model writes no answer the parser reads; every CB example still gets the answer word most likely
    after its output and "\\nAnswer:", as computed by hand, and the counts say how each was answered."""
    engine, tokenizer = tiny_lm
    queries, gold = zero_shot_queries("cb", tokenizer, str(superglue_dir))
    run = decode_and_score("cb", engine, queries, gold, greedy_settings(12), tokenizer=tokenizer, batch_size=4)
    for query, out in zip(queries, run.decoded):
        assert parse_label(out.text, query.answers) is None and not out.text.rstrip().endswith("Answer:")
        context = query.prompt_ids + ids(tokenizer, out.text.rstrip() + "\nAnswer:")
        scores = {
            label: by_hand(engine.lm, context, ids(tokenizer, " " + word)) for word, label in query.answers.items()
        }
        assert run.predictions.labels[query.group] == max(scores, key=scores.get), scores
    summary = run.summary()
    assert (summary["parsed_examples"], summary["likelihood_examples"], summary["unparsed_rows"]) == (0, 6, 6)
    expected = label_metrics("cb", [run.predictions.labels[g] for g in gold], list(gold.values()))
    assert summary["score"] == expected["score"]


def test_unparsed_candidate_rows_choose_yes_or_no_by_likelihood(tiny_lm, superglue_dir):
    """The fine-tuned CB format (one Yes/No decode per candidate relation): each row's Yes or No after
    "Final Answer:", as it was trained, and the example's answer the one candidate said Yes to, else the
    candidate with the largest log P(Yes) - log P(No) among those said Yes to (all, when none is)."""
    engine, tokenizer = tiny_lm
    rows = load_task_split("cb", "validation", "yesno", superglue_dir)
    queries = finetuned_queries(rows, tokenizer, ("No", "Yes"))
    gold = {q.group: "entailment" for q in queries}
    run = decode_and_score("cb", engine, queries, gold, greedy_settings(12), tokenizer=tokenizer, batch_size=8)
    margins: dict[str, dict[str, float]] = {}
    for query, out in zip(queries, run.decoded):
        assert parse_label(out.text, query.answers) is None
        text, separator = cued_text(out.text, ANSWER_PREFIX)
        assert separator == "\n" and text.endswith("\nFinal Answer:")
        context = query.prompt_ids + ids(tokenizer, text)
        yes, no = (by_hand(engine.lm, context, ids(tokenizer, "\n" + word)) for word in ("Yes", "No"))
        margins.setdefault(query.group, {})[query.candidate] = yes - no
    for group, margin in margins.items():
        said_yes = {c: m for c, m in margin.items() if m > 0} or margin
        assert run.predictions.labels[group] == max(said_yes, key=said_yes.get)
    summary = run.summary()
    assert (summary["parsed_examples"], summary["likelihood_examples"], summary["unparsed_rows"]) == (0, 6, 18)


def test_the_text_answers_first_and_likelihood_only_what_it_leaves_open():
    """Which rows are scored, and how candidate examples fold: a parsed answer stands; an unparsed row answers
    by likelihood; an example said Yes to several candidates, or to none, takes the largest Yes margin."""
    relations = ("entailment", "contradiction", "neutral")
    queries = [Query(f"cb-{g}", [1], YES_NO, r) for g in range(4) for r in relations]
    queries.append(Query("rte-0", [1], {"Yes": "entailment", "No": "not_entailment"}))
    texts = (
        *("Final Answer:\nNo", "Final Answer:\nYes", "Final Answer:\nNo"),  # cb-0: decided by the text
        *("Final Answer:\nNo", "gibberish", "Final Answer:\nNo"),  # cb-1: the unparsed row says Yes by likelihood
        *("Final Answer:\nYes", "Final Answer:\nYes", "Final Answer:\nNo"),  # cb-2: two Yes
        *("Final Answer:\nNo", "Final Answer:\nNo", "Final Answer:\nNo"),  # cb-3: no Yes
        "I cannot tell.",  # rte-0: unparsed
    )
    decoded = [Decoded(t, 3, 0.1) for t in texts]
    said = [parse_label(t, q.answers) for t, q in zip(texts, queries)]
    assert rows_to_score(queries, said) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    margins = {3: -1.0, 4: 0.5, 5: -2.0, 6: 0.2, 7: 0.9, 8: 3.0, 9: -0.5, 10: -3.0, 11: -0.1}
    likelihoods = {i: {"Yes": m, "No": 0.0} for i, m in margins.items()} | {12: {"Yes": -4.0, "No": -1.0}}
    predictions = example_predictions("cb", queries, decoded, likelihoods)
    assert predictions.labels == {
        "cb-0": "contradiction",
        "cb-1": "contradiction",
        "cb-2": "contradiction",  # among the two it said Yes to, not neutral's larger margin
        "cb-3": "neutral",
        "rte-0": "not_entailment",
    }
    assert (predictions.parsed_examples, predictions.likelihood_examples) == (1, 4)
    assert (predictions.unparsed_rows, predictions.ambiguous_examples) == (2, 2)
    # without likelihoods (a result of before): the unparsed and ambiguous are unanswered, scored as wrong
    before = example_predictions("cb", queries, decoded)
    assert before.labels == {"cb-0": "contradiction", "cb-1": None, "cb-2": None, "cb-3": None, "rte-0": None}
    assert (before.parsed_examples, before.likelihood_examples) == (1, 0)


@pytest.mark.parametrize(
    "text, cue, expected",
    [
        ("It rained.  \n", "\nAnswer: ", ("It rained.\nAnswer:", " ")),
        ("It rained.\nFinal Answer:\n", ANSWER_PREFIX, ("It rained.\nFinal Answer:", "\n")),  # not given twice
        ("Ann said so", ANSWER_PREFIX, ("Ann said so\nFinal Answer:", "\n")),
        ("", "\nAnswer: ", ("\nAnswer:", " ")),
    ],
)
def test_the_cue_follows_the_output_once(text, cue, expected):
    assert cued_text(text, cue) == expected


def test_vllm_scores_from_prompt_logprobs(monkeypatch):
    import sys
    import types

    calls = []

    class FakeLLM:
        def __init__(self, model, seed, dtype):
            pass

        def generate(self, prompts, sampling, use_tqdm):
            calls.append((prompts, sampling))
            logprob = lambda value: types.SimpleNamespace(logprob=value)  # noqa: E731
            # each prompt position's own token at log P -0.5 * position (the first has none)
            return [
                types.SimpleNamespace(
                    prompt_logprobs=[None]
                    + [{t: logprob(-0.5 * k)} for k, t in enumerate(p["prompt_token_ids"][1:], 1)]
                )
                for p in prompts
            ]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = FakeLLM, lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    from dhrd.cot.baseline import VLLMEngine

    totals = VLLMEngine("some/model").score([([5, 6, 7], [8]), ([5, 6, 7], [9, 10])])
    assert totals == [-1.5, -1.5 - 2.0]  # positions 3 and 3 + 4
    assert calls[0][0] == [{"prompt_token_ids": [5, 6, 7, 8]}, {"prompt_token_ids": [5, 6, 7, 9, 10]}]
    assert calls[0][1]["max_tokens"] == 1 and calls[0][1]["prompt_logprobs"] == 1


@pytest.mark.integration
def test_llama_cpp_scores_as_transformers_does_on_the_same_gguf(smollm2, shared_superglue):
    """llama.cpp's likelihood of each answer word (the quantised weights, computed in its own context) against
    transformers' on the same GGUF dequantised: the same choice, log P within quantisation noise."""
    pytest.importorskip("llama_cpp", reason="the llama.cpp engine needs llama-cpp-python")
    from dhrd.cot.baseline import LlamaCppEngine

    lm, tokenizer = load_causal_lm(smollm2)
    transformers_engine = TransformersEngine(lm, tokenizer, bf16=False)
    queries, gold = zero_shot_queries("cb", tokenizer, str(shared_superglue), groups=["cb-0", "cb-1"])
    engine = LlamaCppEngine(SHARED_GGUF, threads=2)
    run = decode_and_score("cb", engine, queries, gold, greedy_settings(16), tokenizer=tokenizer, batch_size=1)
    assert None not in run.predictions.labels.values() and run.summary()["parsed_examples"] < 2  # 16 tokens
    for query in queries:
        context = query.prompt_ids + ids(tokenizer, "The premise says it.\nAnswer:")
        pairs = [(context, ids(tokenizer, " " + word)) for word in query.answers]
        llama, torch_totals = engine.score(pairs), transformers_engine.score(pairs)
        assert llama == pytest.approx(torch_totals, abs=0.5)
        assert max(range(3), key=llama.__getitem__) == max(range(3), key=torch_totals.__getitem__)
        assert engine.score(pairs[::-1]) == pytest.approx(llama[::-1], abs=1e-3)  # the cached context is reused
