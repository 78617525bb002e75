"""The CoT baseline (answer parser, engines, scoring) and ``dhrd benchmark`` end to end on tiny models."""

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_GGUF, assert_provenance, tiny_run, write_jsonl
from typer.testing import CliRunner

from dhrd import DHRDTrainingArguments, evaluate, load_task_split, predict_proba, train
from dhrd.benchmarks.benchmark import (
    SYSTEMS,
    BenchmarkArguments,
    benchmark,
    cot_timing,
    headline_ratios,
    read_result,
    write_markdown,
)
from dhrd.benchmarks.timing import forward_flops, gemm_peak
from dhrd.cli.commands import app
from dhrd.cot.baseline import (
    Decoded,
    Query,
    TransformersEngine,
    decode_and_score,
    example_predictions,
    finetuned_gold,
    fitted_max_new_tokens,
    greedy_settings,
    parse_label,
    zero_shot_queries,
)
from dhrd.data.task_metrics import label_metrics
from dhrd.errors import DHRDInputError
from dhrd.modeling import load_causal_lm
from dhrd.stats import latency_percentiles

CB_WORDS = {"Entailment": "entailment", "Contradiction": "contradiction", "Neither": "neutral"}
YES_NO = {"No": "No", "Yes": "Yes"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The premise says so.\nAnswer: Entailment", "entailment"),
        ("reasoning...\n**Answer:** neither.", "neutral"),
        ("Step 1 ... Answer: Contradiction, because the premise denies it", "contradiction"),
        ("So the answer is Neither.", "neutral"),
        ("Answer: Entailment\nOn reflection... Answer: Contradiction", "contradiction"),  # the last answer counts
        ("Entailment", "entailment"),
        ("The premise is about rain.", None),
        ("Answer: maybe", None),
        ("", None),
    ],
)
def test_parse_label_is_lenient_but_never_guesses(text, expected):
    assert parse_label(text, CB_WORDS) == expected


RTE_WORDS = {"Yes": "entailment", "No": "not_entailment"}


# Outputs as small instruct models write them: echoed option lists, "X or Y", an answer followed by more
# sentences that mention "answer", markdown, answer-first layouts. Unparsed (None) is never a guess.
@pytest.mark.parametrize(
    "text, words, expected",
    [
        ("Answer: Entailment / Contradiction / Neither", CB_WORDS, None),  # the option list echoed
        ("Answer: Entailment, Contradiction or Neither?", CB_WORDS, None),
        ("Options: Entailment / Contradiction / Neither\nAnswer: Neither", CB_WORDS, "neutral"),
        (
            "Answer: Entailment / Contradiction / Neither\nThe premise denies it.\nAnswer: Contradiction",
            CB_WORDS,
            "contradiction",
        ),
        ("Answer: **Neither**, since there is no entailment here.", CB_WORDS, "neutral"),
        ("Answer: The premise does not entail it.", CB_WORDS, None),  # "entail" is not an answer word
        ("Answer: It is Entailment.", CB_WORDS, "entailment"),
        ("The hypothesis follows, so the answer is Entailment", CB_WORDS, "entailment"),
        ("The answer is: contradiction.", CB_WORDS, "contradiction"),
        ("answer: ENTAILMENT", CB_WORDS, "entailment"),
        ("- Neither", CB_WORDS, "neutral"),
        ("Answer: Yes or No", YES_NO, None),
        ("The answer is Yes or No.", YES_NO, None),
        ("Answer: Yes/No", YES_NO, None),
        ("Answer: Yes. The answer is clear.", YES_NO, "Yes"),  # a later "answer is" that names nothing
        ("Answer: Yes, because the passage says so.", YES_NO, "Yes"),
        ("Answer: No. Yes would need the text to say so.", YES_NO, "No"),
        ("Reasoning: the passage names the city.\nFinal Answer: Yes", YES_NO, "Yes"),
        ("Final Answer:\n**No**", YES_NO, "No"),
        ("I think the answer is no.", YES_NO, "No"),
        ("Is the answer correct Yes or No? Yes", YES_NO, None),  # the question echoed, no "answer is"
        ("Yes.", YES_NO, "Yes"),
        ('Answer: "Yes"', YES_NO, "Yes"),
        ("Answer: yes and no", YES_NO, None),
        ("Answer: Maybe", YES_NO, None),
        ("The premise entails the hypothesis. Answer: Yes", RTE_WORDS, "entailment"),
        ("Answer: No (the hypothesis is not supported)", RTE_WORDS, "not_entailment"),
        ("Answer: Yes, no doubt.", YES_NO, "Yes"),
    ],
)
def test_parse_label_on_realistic_small_model_outputs(text, words, expected):
    assert parse_label(text, words) == expected


def test_parse_label_reads_the_finetuned_format():
    assert parse_label("Ann said it.\nFinal Answer:\nYes", YES_NO) == "Yes"
    assert parse_label("Ann said it.\nFinal Answer:\nNo\n", YES_NO) == "No"
    assert parse_label("Ann said it. Final Answer:", YES_NO) is None


def _decoded(*texts):
    return [Decoded(t, 3, 0.1) for t in texts]


def test_candidate_rows_fold_into_one_prediction_and_ambiguity_is_wrong():
    rows = []
    for group in ("cb-0", "cb-1", "cb-2"):
        rows += [Query(group, [1], YES_NO, relation) for relation in ("entailment", "contradiction", "neutral")]
    outputs = _decoded(
        *("Final Answer:\nNo", "Final Answer:\nYes", "Final Answer:\nNo"),  # one Yes: contradiction
        *("Final Answer:\nYes", "Final Answer:\nYes", "Final Answer:\nNo"),  # two Yes: ambiguous
        *("Final Answer:\nNo", "gibberish", "Final Answer:\nNo"),  # no Yes, one unparseable
    )
    predictions = example_predictions("cb", rows, outputs)
    assert predictions.labels == {"cb-0": "contradiction", "cb-1": None, "cb-2": None}
    assert predictions.unparsed_rows == 1 and predictions.ambiguous_examples == 2
    metrics = label_metrics("cb", [predictions.labels[g] for g in ("cb-0", "cb-1", "cb-2")], ["contradiction"] * 3)
    assert metrics["accuracy"] == pytest.approx(100 / 3, abs=1e-3)
    assert set(metrics) >= {"f1", "accuracy", "score", "examples"}


def test_single_row_yes_no_answers_map_to_native_labels():
    rows = [Query(f"rte-{i}", [1], YES_NO) for i in range(3)]
    predictions = example_predictions("rte", rows, _decoded("Final Answer:\nYes", "Final Answer:\nNo", "?"))
    assert predictions.labels == {"rte-0": "entailment", "rte-1": "not_entailment", "rte-2": None}
    metrics = label_metrics("rte", list(predictions.labels.values()), ["entailment", "entailment", "not_entailment"])
    assert metrics["accuracy"] == pytest.approx(100 / 3, abs=1e-3)  # the unparsed one is scored as wrong


def test_label_metrics_match_the_classifier_metrics_on_the_same_predictions():
    gold = ["entailment", "contradiction", "neutral", "entailment"]
    said = ["entailment", "neutral", "neutral", "contradiction"]
    from sklearn.metrics import f1_score

    metrics = label_metrics("cb", said, gold)
    assert metrics["accuracy"] == 50.0
    assert metrics["f1"] == pytest.approx(100 * f1_score(gold, said, average="macro"), abs=1e-3)
    with pytest.raises(DHRDInputError, match="MultiRC"):
        label_metrics("multirc", said, gold)


def test_finetuned_gold_comes_from_the_classifier_rows(superglue_dir):
    rows = load_task_split("cb", "validation", "yesno", superglue_dir)
    gold = finetuned_gold(rows, ("No", "Yes"))
    assert gold["cb-0"] == "entailment" and gold["cb-1"] == "contradiction" and len(gold) == 6
    rte = load_task_split("rte", "validation", "yesno", superglue_dir)
    assert set(finetuned_gold(rte, ("No", "Yes")).values()) == {"entailment", "not_entailment"}


def test_zero_shot_prompts_name_the_answers(tiny_backbone, superglue_dir):
    from dhrd.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_backbone))
    queries, gold = zero_shot_queries("copa", tokenizer, str(superglue_dir), groups=["copa-1", "copa-0"])
    assert [q.group for q in queries] == ["copa-1", "copa-0"] and gold == {"copa-1": "choice2", "copa-0": "choice1"}
    assert "Option 1 / Option 2" in queries[0].messages[0]["content"]
    assert queries[0].answers == {"Option 1": "choice1", "Option 2": "choice2"}
    with pytest.raises(DHRDInputError, match="multirc"):
        zero_shot_queries("multirc", tokenizer, str(superglue_dir))


def test_greedy_budget_fits_the_rationale_lengths(tiny_backbone):
    from dhrd.data.inputs import REASON_PREFIX
    from dhrd.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_backbone))
    # 20 rationales of 20 different lengths, the longest far above the rest: the 95th percentile (linear
    # interpolation between the 19th and 20th lengths) is neither the maximum, the median nor the mean
    rationales = [" ".join(["the sun set"] * k) + "." for k in range(1, 20)] + ["Ann said so. " * 60]
    lengths = sorted(len(tokenizer(REASON_PREFIX + r, add_special_tokens=False)["input_ids"]) for r in rationales)
    assert lengths[-1] - lengths[-2] > 40 and len(set(lengths)) == 20
    expected = int(lengths[-2] + 0.05 * (lengths[-1] - lengths[-2])) + 16
    assert expected == int(np.quantile(lengths, 0.95)) + 16
    assert fitted_max_new_tokens(rationales, tokenizer) == expected
    assert fitted_max_new_tokens(rationales + ["", None], tokenizer) == expected  # empty ones are not rationales
    assert fitted_max_new_tokens(rationales, tokenizer, quantile=0.5, answer_room=0) == int(np.median(lengths))
    with pytest.raises(DHRDInputError):
        fitted_max_new_tokens([], tokenizer)


def test_batched_greedy_decoding_equals_one_at_a_time(tiny_backbone):
    lm, tokenizer = load_causal_lm(str(tiny_backbone))
    engine = TransformersEngine(lm, tokenizer, bf16=False)
    texts = ["Passage: Ann said", "The museum is in Bilbao and the", "Question:", "the man turned on the tap water"]
    queries = [Query(str(i), tokenizer(t)["input_ids"], YES_NO) for i, t in enumerate(texts)]
    one = engine.run(queries, greedy_settings(12), batch_size=1, progress=False)
    four = engine.run(queries, greedy_settings(12), batch_size=4, progress=False)
    assert [d.text for d in one] == [d.text for d in four]
    assert all(0 < d.new_tokens <= 12 for d in one)


def test_fast_path_switches_do_not_change_predictions(tiny_backbone, superglue_dir):
    from dhrd.modeling import build_classifier

    model, tokenizer, _ = build_classifier(str(tiny_backbone), ("No", "Yes"))
    texts = [e.text for e in load_task_split("cb", "validation", "yesno", superglue_dir)]
    timed = []
    base = predict_proba(model, tokenizer, texts, 4, bf16=False, progress=False, batch_seconds=timed)
    assert sum(n for n, _ in timed) == len(texts) and all(s > 0 for _, s in timed)
    unsorted = predict_proba(model, tokenizer, texts, 4, bf16=False, progress=False, sort_by_length=False)
    no_grad = predict_proba(model, tokenizer, texts, 4, bf16=False, progress=False, inference_mode=False)
    np.testing.assert_allclose(unsorted, base, atol=1e-5)
    np.testing.assert_allclose(no_grad, base, atol=1e-6)


class FakeClock:
    """``time.perf_counter`` for code under test: it moves only when the test says."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now


def test_gemm_peak_and_flop_count(tiny_backbone, monkeypatch):
    import types

    import dhrd.benchmarks.timing
    from dhrd.modeling import build_classifier

    clock, durations = FakeClock(), iter([3e-6, 2e-6, 5e-6])
    real_matmul = torch.matmul

    def timed_matmul(a, b):  # the warm-up and each timed matmul: the timed ones take the scripted seconds
        if timed_matmul.calls:
            clock.now += next(durations)
        timed_matmul.calls += 1
        return real_matmul(a, b)

    timed_matmul.calls = 0
    monkeypatch.setattr(dhrd.benchmarks.timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(torch, "matmul", timed_matmul)
    peak = gemm_peak(torch.float32, n=64, repeats=3)
    monkeypatch.undo()
    # the best of the three matmuls, 2 n^3 FLOPs each: 2 * 64^3 / 2e-6 s = 0.2621 TFLOP/s
    assert peak == {"n": 64, "dtype": "float32", "tflops": round(2 * 64**3 / 2e-6 / 1e12, 4)}
    assert timed_matmul.calls == 4
    model, _, _ = build_classifier(str(tiny_backbone), ("No", "Yes"))
    one, two = forward_flops(model, [10]), forward_flops(model, [10, 10])
    assert two == 2 * one and forward_flops(model, [20]) > 2 * one  # attention grows with the square


def test_classifier_pass_statistics_come_from_the_measured_passes(monkeypatch):
    """examples/s from the fastest and the median pass; latency percentiles over the requests of the last pass
    (each request waits for its whole batch), against numpy on scripted seconds."""
    import types

    import dhrd.benchmarks.timing
    from dhrd.data.examples import Example

    clock = FakeClock()
    passes = iter(
        [
            (0.05, []),  # the warm-up
            (0.9, [(4, 0.2), (4, 0.3), (4, 0.4)]),
            (0.5, [(4, 0.1), (4, 0.1), (4, 0.3)]),
            (0.7, [(2, 0.05), (4, 0.25), (4, 0.15), (2, 0.6)]),  # the last pass
        ]
    )

    def fake_predict(model, tokenizer, texts, batch_size, progress=True, batch_seconds=None, **switches):
        seconds, batches = next(passes)
        clock.now += seconds
        if batch_seconds is not None:
            batch_seconds.extend(batches)
        return np.full((len(texts), 2), 0.5)

    monkeypatch.setattr(dhrd.benchmarks.timing, "predict_proba", fake_predict)
    monkeypatch.setattr(dhrd.benchmarks.timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    rows = [Example(f"cb-{g}#{r}", "cb", "t", 0, f"cb-{g}", r) for g in range(4) for r in "abc"]
    timed = dhrd.benchmarks.timing.time_classifier(None, None, rows, 4, repeats=3)
    last = [0.05] * 2 + [0.25] * 4 + [0.15] * 4 + [0.6] * 2
    assert (timed["examples"], timed["rows"]) == (4, 12)
    assert (timed["seconds_min"], timed["seconds_median"]) == (0.5, 0.7)
    assert timed["examples_per_s"] == 8.0 and timed["examples_per_s_median"] == 5.714  # 4 significant figures
    assert timed["latency_p50_ms"] == round(1000 * float(np.percentile(last, 50)), 2) == 200.0
    assert timed["latency_p95_ms"] == round(1000 * float(np.percentile(last, 95)), 2) == 600.0


def test_cot_pass_statistics_come_from_the_measured_decodes(monkeypatch):
    """decode_and_score (the one CoT pipeline of the benchmark and the reproduce runner) and the benchmark's
    timing of it: examples/s from the fastest and the median pass, latency percentiles and new tokens over
    the decodes of the last pass, the score from the last pass's answers. The likelihood scoring of an answer
    the text does not give is part of its pass's time and of its request's latency."""
    import types

    import dhrd.cot.baseline
    import dhrd.cot.likelihood

    clock = FakeClock()
    seconds = {0: [0.1], 1: [1.0, 2.0, 3.0, 4.0, 5.0], 2: [0.5, 0.5, 0.7, 2.5, 0.9]}  # warm-up, pass 1, pass 2
    answers = {1: ["Answer: No"] * 5, 2: ["Answer: Yes"] * 4 + ["no idea"]}

    class FakeEngine:
        calls = []

        def run(self, queries, settings, batch_size, seed, progress=True):
            k = len(FakeEngine.calls)
            FakeEngine.calls.append((len(queries), settings, batch_size, seed))
            clock.now += sum(seconds[k])
            texts = answers.get(k, ["Answer: Yes"])
            timed = enumerate(zip(texts, seconds[k]))
            return [Decoded(t, 3 + j * settings.max_new_tokens % 5, s) for j, (t, s) in timed]

        def score(self, pairs):  # the one unparsed row of pass 2: its context, then " No" and " Yes"
            FakeEngine.scored.append(pairs)
            clock.now += 0.25
            return [-2.0, -0.5]

    FakeEngine.scored = []
    for module in (dhrd.cot.baseline, dhrd.cot.likelihood):
        monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    queries = [Query(f"g{k}", [1, 2], YES_NO) for k in range(5)]
    gold = {f"g{k}": "entailment" for k in range(5)}
    tokenizer = lambda text, add_special_tokens: {"input_ids": [len(text)]}  # noqa: E731 (one id per piece)
    run = decode_and_score(
        "rte", FakeEngine(), queries, gold, greedy_settings(8), tokenizer=tokenizer, batch_size=2, seed=7, repeats=2,
        warm_up=True,
    )  # fmt: skip
    warm_up, first, last_pass = FakeEngine.calls
    # only the last pass's "no idea" was scored: its prompt, its text and the cue; then each answer word
    context = [1, 2, len("no idea\nAnswer:")]
    assert FakeEngine.scored == [[(context, [len(" No")]), (context, [len(" Yes")])]]
    assert warm_up[0] == 1 and warm_up[1].max_new_tokens == 4 and not warm_up[1].do_sample and warm_up[2] == 1
    assert (first[2], first[3], last_pass[3]) == (2, 7, 8)  # pass r is seeded seed + r
    timed = cot_timing(run)
    last = seconds[2][:4] + [0.9 + 0.25]  # the scored request waited for its decode and its scoring batches
    assert [d.seconds for d in run.decoded] == last
    # pass 2: 0.5+0.5+0.7+2.5+0.9 and 0.25 of scoring; the median of it and pass 1's 15
    assert (timed["seconds_min"], timed["seconds_median"]) == (5.35, 10.175)
    assert timed["examples_per_s"] == 0.9346 and timed["examples_per_s_median"] == 0.4914  # 4 significant figures
    assert timed["latency_p50_ms"] == round(1000 * float(np.percentile(last, 50)), 2) == 700.0
    assert timed["latency_p95_ms"] == round(1000 * float(np.percentile(last, 95)), 2)
    assert timed["mean_new_tokens"] == round(float(np.mean([d.new_tokens for d in run.decoded])), 1)
    summary = run.summary()  # the last pass's answers: four parsed, one unparsed and Yes by likelihood
    assert summary["score"] == summary["metrics"]["score"] == 100.0
    assert (summary["parsed_examples"], summary["likelihood_examples"]) == (4, 1)
    assert (summary["unparsed_rows"], summary["ambiguous_examples"]) == (1, 0)
    assert summary["sample_output"] == "Answer: Yes"


def test_latency_percentiles_against_numpy():
    latencies = [0.05] * 2 + [0.25] * 4 + [0.15] * 4 + [0.6] * 2
    assert latency_percentiles(latencies) == {
        "latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "latency_p95_ms": round(1000 * float(np.percentile(latencies, 95)), 2),
    }
    assert latency_percentiles([0.1, 0.2, 0.3, 0.4]) == {"latency_p50_ms": 250.0, "latency_p95_ms": 385.0}


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_backbone, superglue_dir):
    """Pooled, DHRD and CoT-fine-tuned (alpha 1, beta 0, reasoning head kept) tiny CB models."""
    root = tmp_path_factory.mktemp("bench")
    rationales = write_jsonl(
        root / "CB" / "train.jsonl", [{"idx": i, "rationale": f"Ann said so {i}."} for i in range(12)]
    )
    common = tiny_run(tiny_backbone, superglue_dir, rationales=str(rationales))
    runs = {
        "pooled": DHRDTrainingArguments(output_dir=str(root / "pooled"), **common),
        "dhrd": DHRDTrainingArguments(output_dir=str(root / "dhrd"), method="dhrd", **common),
        "cot": DHRDTrainingArguments(
            output_dir=str(root / "cot"), method="dhrd", alpha=1.0, beta=0.0, keep_reasoning_head=True, **common
        ),
    }
    return {name: train(args).model_dir for name, args in runs.items()} | {"root": root, "rationales": rationales}


def test_benchmark_measures_every_system_in_one_run(trained, tiny_backbone, superglue_dir, monkeypatch):
    import time

    import dhrd.benchmarks.benchmark
    import dhrd.benchmarks.timing
    import dhrd.cot.baseline
    from dhrd.modeling import load_classifier

    # every timed pass as it happens: a classifier pass's batches and seconds, a CoT pass's decodes (and the
    # same decodes once their answers were read, the latency of a request scored by likelihood grown by it)
    passes, decodes, answered = [], [], []
    real_predict, real_run, real_answer = (
        dhrd.benchmarks.timing.predict_proba,
        TransformersEngine.run,
        dhrd.cot.baseline.answer,
    )

    def recording_predict(model, tokenizer, texts, batch_size, **kwargs):
        began = time.perf_counter()
        probs = real_predict(model, tokenizer, texts, batch_size, **kwargs)
        if kwargs.get("batch_seconds") is not None and set(kwargs) == {"progress", "batch_seconds", "bf16"}:
            passes.append((model, batch_size, kwargs["batch_seconds"], time.perf_counter() - began))
        return probs

    def recording_run(self, queries, settings, batch_size, seed=0, progress=True):
        decoded = real_run(self, queries, settings, batch_size, seed, progress)
        decodes.append((len(queries), settings.max_new_tokens, decoded))
        return decoded

    def recording_answer(task, engine, tokenizer, queries, decoded, batch_size):
        predictions, grown = real_answer(task, engine, tokenizer, queries, decoded, batch_size)
        answered.append(grown)
        return predictions, grown

    monkeypatch.setattr(dhrd.benchmarks.timing, "predict_proba", recording_predict)
    monkeypatch.setattr(TransformersEngine, "run", recording_run)
    monkeypatch.setattr(dhrd.cot.baseline, "answer", recording_answer)
    out = trained["root"] / "bench"
    result = benchmark(
        BenchmarkArguments(
            task="cb",
            data_dir=str(superglue_dir),
            max_examples=4,
            pooled=str(trained["pooled"]),
            dhrd=str(trained["dhrd"]),
            cot=str(trained["cot"]),
            backbone=str(tiny_backbone),
            batch_sizes=(1, 4),
            repeats=2,
            cot_settings=("greedy",),
            rationales=str(trained["rationales"]),
            engines=("transformers",),
            compile=False,
            bf16=False,
            output=str(out),
            progress=False,
        )
    )
    systems = {(r["system"], r["batch_size"]) for r in result.rows}
    assert systems == {(s, b) for s in ("pooled", "dhrd", "cot", "cot-zero-shot") for b in (1, 4)}
    monkeypatch.undo()
    for row in result.rows:
        assert row["examples"] == 4
        # examples/s of the best and of the median pass, from their measured seconds
        assert row["examples_per_s"] == pytest.approx(4 / row["seconds_min"], rel=1e-2)
        assert row["examples_per_s_median"] == pytest.approx(4 / row["seconds_median"], rel=1e-2)
    # a classifier row's passes are its first `repeats` passes of its model at its batch size (the inference-path
    # switches come later); its latencies are those of the requests of the last one, each its batch's seconds
    models = list(dict.fromkeys(model for model, *_ in passes))  # pooled's, then dhrd's
    assert len(models) == 2
    for row in (r for r in result.rows if r["system"] in ("pooled", "dhrd")):
        model = models[("pooled", "dhrd").index(row["system"])]
        mine = [p for p in passes if p[0] is model and p[1] == row["batch_size"]][:2]
        latencies = [seconds for size, seconds in mine[-1][2] for _ in range(size)]
        assert len(latencies) == row["rows"] == 12, row
        assert row["latency_p50_ms"] == round(1000 * float(np.percentile(latencies, 50)), 2), row
        assert row["latency_p95_ms"] == round(1000 * float(np.percentile(latencies, 95)), 2), row
        walls = [wall for *_, wall in mine]  # the pass as timed around predict_proba itself
        assert row["seconds_min"] == pytest.approx(min(walls), abs=0.02, rel=0.1)
        assert row["seconds_median"] == pytest.approx(float(np.median(walls)), abs=0.02, rel=0.1)
    # a CoT row's latencies are the seconds of the decodes of its (only) timed pass, each grown by the scoring
    # of its answer where the text gave none, in the order rows were made
    full = [d for n, budget, d in decodes if budget > 4]  # the warm-up decodes 4 tokens of one query
    read = [d for d in answered if len(d) > 1]  # and its answer is read from one query
    cot_rows = [r for r in result.rows if r["system"].startswith("cot")]
    assert len(full) == len(read) == len(cot_rows) == 4
    for row, decoded, grown in zip(cot_rows, full, read):
        assert len(decoded) == len(grown) == row["rows"]
        assert all(g.seconds >= d.seconds and g.text == d.text for d, g in zip(decoded, grown))
        assert row["latency_p50_ms"] == round(1000 * float(np.percentile([d.seconds for d in grown], 50)), 2)
        assert row["latency_p95_ms"] == round(1000 * float(np.percentile([d.seconds for d in grown], 95)), 2)
        assert row["mean_new_tokens"] == round(float(np.mean([d.new_tokens for d in decoded])), 1)
        # the tiny models write no answer: every example is answered by likelihood, and the table says so
        assert (row["parsed_examples"], row["likelihood_examples"]) == (0, 4)
        assert row["score"] == row["metrics"]["score"]
    table = out.with_suffix(".md").read_text()
    assert table.count("answers: parsed 0, by likelihood 4") == 4 and "unparsed" not in table
    # a classifier's accuracy column is its score on those 4 examples, as dhrd evaluate gives it
    for system in ("pooled", "dhrd"):
        expected = evaluate(trained[system], task="cb", data_dir=str(superglue_dir), max_examples=4, bf16=False)
        for row in (r for r in result.rows if r["system"] == system):
            assert row["score"] == pytest.approx(expected["tasks"]["cb"]["score"], abs=1e-3), (system, row)
    classifier = [r for r in result.rows if r["system"] in ("pooled", "dhrd")]
    assert all(r["rows"] == 12 for r in classifier)  # 3 relation rows each
    # achieved FLOP/s: 2 per non-embedding weight per token plus attention, over the best pass, against the GEMM
    for row in classifier:
        model, tokenizer = load_classifier(trained[row["system"]])
        rows = load_task_split("cb", "validation", "yesno", superglue_dir)
        lengths = [len(tokenizer(e.text)["input_ids"]) for e in rows]
        config = model.config.text_config
        weights = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
        flops = sum(2 * weights * n + 4 * config.num_hidden_layers * config.hidden_size * n * n for n in lengths[:12])
        achieved = flops / row["seconds_min"] / 1e12
        assert row["achieved_tflops"] == pytest.approx(achieved, rel=1e-3, abs=6e-5)
        assert row["fraction_of_gemm_peak"] == pytest.approx(achieved / result.gemm[0]["tflops"], rel=1e-3, abs=6e-5)
    finetuned = [r for r in result.rows if r["system"] == "cot"]
    assert all(r["rows"] == 12 and r["setting"] == "greedy" for r in finetuned)
    zero_shot = [r for r in result.rows if r["system"] == "cot-zero-shot"]
    assert all(r["rows"] == 4 for r in zero_shot)  # one decode per example, native answers
    assert {r["dhrd_over"] for r in result.ratios} >= {"pooled", "cot [transformers, greedy]"}
    assert [f["variant"].split(" ")[0] for f in result.fast_path] == ["default", "no", "no_grad"]
    assert result.cot_settings["greedy"].startswith("greedy, max_new_tokens=")
    saved = json.loads(out.with_suffix(".json").read_text())
    assert_provenance(saved["provenance"])
    assert saved["provenance"]["versions"]["torch"] == torch.__version__ and saved["gemm"] == result.gemm
    assert [g["dtype"] for g in result.gemm] == ["float32"]  # bf16=False: the fp32 peak is the reference
    assert "DHRD examples/s over" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_benchmark_and_reproduce_build_cot_through_one_setup(
    trained, tiny_backbone, superglue_dir, tmp_path, monkeypatch
):
    """``dhrd benchmark`` and ``dhrd reproduce`` on the same 4 CB examples: both CoT systems' LMs, queries, gold
    labels and greedy settings come from ``cot_setup`` and are the same in both commands."""
    import shutil

    import dhrd.cot.baseline
    import dhrd.cot.setup
    from dhrd.reproduction import make_arguments
    from dhrd.reproduction.cells import cot_cell, run_dir

    built, decoded = [], []
    real_inputs, real_decode = dhrd.cot.setup.cot_inputs, dhrd.cot.baseline.decode_and_score

    def recording_inputs(system, task, model, data_dir, choose):
        built.append(real_inputs(system, task, model, data_dir, choose))
        return built[-1]

    def recording_decode(task, engine, queries, gold, settings, **kwargs):
        decoded.append((queries, gold, settings))
        return real_decode(task, engine, queries, gold, settings, **kwargs)

    for module in (dhrd.cot.setup, dhrd.benchmarks.benchmark):
        monkeypatch.setattr(module, "cot_inputs", recording_inputs)
    for module in (dhrd.cot.baseline, dhrd.benchmarks.benchmark):
        monkeypatch.setattr(module, "decode_and_score", recording_decode)
    rationales = str(trained["rationales"])
    benchmark(
        BenchmarkArguments(
            task="cb",
            data_dir=str(superglue_dir),
            max_examples=4,
            cot=str(trained["cot"]),
            backbone=str(tiny_backbone),
            batch_sizes=(8,),
            repeats=1,
            cot_settings=("greedy",),
            rationales=rationales,
            engines=("transformers",),
            fast_path=False,
            bf16=False,
            output=str(tmp_path / "bench"),
            progress=False,
        )
    )
    args = make_arguments(
        None,
        tasks=["cb"],
        seeds=[1],
        methods=["cot", "cot-zero-shot"],
        backbone=str(tiny_backbone),
        data_dir=str(superglue_dir),
        output_dir=str(tmp_path / "reproduce"),
        cot_eval_examples=4,
        cot_setting="greedy",
    )
    shutil.copytree(trained["cot"], run_dir(args, "cb", "cot", 1) / "model")
    cells = {method: cot_cell(args, "cb", method, 1, rationales) for method in ("cot", "cot-zero-shot")}
    assert [i.system for i in built] == ["cot", "cot-zero-shot"] * 2 and len(decoded) == 4
    for bench, reproduce, bench_decode, reproduce_decode in zip(built[:2], built[2:], decoded[:2], decoded[2:]):
        assert [asdict(q) for q in bench.queries] == [asdict(q) for q in reproduce.queries]
        assert bench.gold == reproduce.gold and len(bench.gold) == 4
        assert bench_decode[2] == reproduce_decode[2] and bench_decode[2].name == "greedy"
        assert [q.cue for q in bench.queries][:1] == (
            ["\nFinal Answer:\n"] if bench.system == "cot" else ["\nAnswer: "]
        )
    for cell in cells.values():  # and the cells count how their answers were read
        assert cell["eval_examples"] == 4 and cell["parsed_examples"] + cell["likelihood_examples"] == 4


def test_cot_setup_refuses_what_it_cannot_decode_and_builds_settings(tiny_backbone, monkeypatch):
    from dhrd.cot.baseline import PAPER_SETTINGS
    from dhrd.cot.setup import cot_inputs, decode_settings
    from dhrd.modeling import load_tokenizer

    with pytest.raises(DHRDInputError, match="zero-shot CoT does not support multirc"):
        cot_inputs("cot-zero-shot", "multirc", str(tiny_backbone), None, list)
    with pytest.raises(DHRDInputError, match="'pooled' is no CoT system"):
        cot_inputs("pooled", "cb", str(tiny_backbone), None, list)
    tokenizer = load_tokenizer(str(tiny_backbone))
    both = decode_settings(("greedy", "paper"), "cb", tokenizer, None, greedy_max_new_tokens=40)
    assert both == [PAPER_SETTINGS, greedy_settings(40)]
    assert decode_settings(("paper",), "cb", tokenizer, None) == [PAPER_SETTINGS]
    monkeypatch.setattr("dhrd.data.rationales.default_rationale_dir", lambda: None)  # as without ../shared
    with pytest.raises(DHRDInputError, match="no rationale cache for cb"):
        decode_settings(("greedy",), "cb", tokenizer, None)


def test_benchmark_accuracy_matches_evaluate(trained, superglue_dir):
    """The classifier rows score the same predictions ``dhrd evaluate`` makes."""
    from dhrd import evaluate

    result = benchmark(
        BenchmarkArguments(
            task="cb",
            data_dir=str(superglue_dir),
            pooled=str(trained["pooled"]),
            zero_shot=False,
            batch_sizes=(2,),
            repeats=1,
            fast_path=False,
            bf16=False,
            output=str(trained["root"] / "bench-eval"),
            progress=False,
        )
    )
    expected = evaluate(trained["pooled"], data_dir=str(superglue_dir), bf16=False)["tasks"]["cb"]["score"]
    assert result.rows[0]["score"] == pytest.approx(expected)


def test_headline_ratios():
    rows = [
        {"system": "pooled", "engine": "t", "setting": "f", "batch_size": 1, "examples_per_s": 10.0},
        {"system": "dhrd", "engine": "t", "setting": "f", "batch_size": 1, "examples_per_s": 9.0},
        {"system": "cot-zero-shot", "engine": "llama.cpp", "setting": "paper", "batch_size": 1, "examples_per_s": 0.1},
    ]
    assert headline_ratios(rows) == [
        {"batch_size": 1, "dhrd_over": "pooled", "ratio": 0.9},
        {"batch_size": 1, "dhrd_over": "cot-zero-shot [llama.cpp, paper]", "ratio": 90.0},
    ]


RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize(
    "name", ["benchmark-cb-smollm2-cpu", "benchmark-rte-smollm2-cpu", "benchmark-rte-classifiers-smollm2-cpu"]
)
def test_committed_benchmark_results_read_under_todays_names(name, tmp_path):
    """Results written when the CoT fine-tuned system was ``cot-finetuned`` read back as ``cot`` (the reproduce
    runner's name), and render the committed table again with only that name changed."""
    result = read_result(RESULTS / f"{name}.json")
    assert {r["system"] for r in result.rows} <= set(SYSTEMS)
    assert all(r["dhrd_over"].split(" ")[0] in SYSTEMS for r in result.ratios)
    if "arguments" in json.loads((RESULTS / f"{name}.json").read_text()):  # the CB one predates recorded arguments
        assert "cot_finetuned" not in result.arguments
        rendered = write_markdown(result, tmp_path / "table.md").read_text()
        assert rendered == (RESULTS / f"{name}.md").read_text().replace("| cot-finetuned ", "| cot ")
    if name == "benchmark-rte-smollm2-cpu":
        assert result.arguments["cot"] == "runs/issue6/rte-cot-finetuned-s1"
        assert sum(r["system"] == "cot" for r in result.rows) == 4


def test_cli_benchmark_errors_are_one_line(tmp_path, trained):
    runner = CliRunner()
    result = runner.invoke(app, ["benchmark", "--pooled", str(tmp_path / "none"), "--no-zero-shot"])
    assert (
        result.exit_code == 2
        and result.output.strip().startswith("error:")
        and "no trained model here" in result.output
    )
    result = runner.invoke(app, ["benchmark", "--batch-sizes", "1,x"])
    assert result.exit_code == 2 and "comma-separated" in result.output
    for flag in ("--cot", "--cot-finetuned"):  # the earlier name, in the commands committed results record
        result = runner.invoke(app, ["benchmark", flag, str(trained["pooled"]), "--no-zero-shot"])
        assert result.exit_code == 2 and "no reasoning head was kept" in result.output
    result = runner.invoke(app, ["benchmark", "--no-zero-shot"])
    assert result.exit_code == 2 and "nothing to benchmark" in result.output


def test_cli_benchmark_prints_the_table(tmp_path, trained, superglue_dir):
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "benchmark",
            "--data-dir",
            str(superglue_dir),
            "--pooled",
            str(trained["pooled"]),
            "--dhrd",
            str(trained["dhrd"]),
            "--no-zero-shot",
            "--batch-sizes",
            "2",
            "--repeats",
            "1",
            "--no-compile",
            "--output",
            str(tmp_path / "b"),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    # the printed ratio is DHRD's examples/s over pooled's, as the measured rows give them
    saved = json.loads((tmp_path / "b.json").read_text())
    speed = {r["system"]: r["examples_per_s"] for r in saved["rows"] if r["batch_size"] == 2}
    assert set(speed) == {"pooled", "dhrd"} and saved["inputs"]["examples"] == 6
    printed = re.findall(r"batch 2: DHRD is ([0-9.]+)x the examples/s of pooled", result.output)
    assert len(printed) == 1 and float(printed[0]) == pytest.approx(speed["dhrd"] / speed["pooled"], abs=0.006)
    gemm = ", ".join(f"{g['dtype']} {g['tflops']:.3f} TFLOP/s" for g in saved["gemm"])
    assert f"GEMM peak: {gemm}." in result.output
    table = [[c.strip() for c in x.split("│")[1:-1]] for x in result.output.splitlines() if x.count("│") > 5]
    for row in saved["rows"]:  # and the table's examples/s and score columns
        cells = next(c for c in table if c[0] == row["system"])
        assert cells[4] == f"{row['examples_per_s']:.3f}" and cells[8] == f"{row['score']:.2f}", cells
    assert (tmp_path / "b.png").is_file()


# ------------------------------------------------------------------------------------------ real model
@pytest.mark.integration
def test_llama_cpp_engine_reads_the_same_prompt_tokens(smollm2, shared_superglue):
    pytest.importorskip("llama_cpp", reason="the llama.cpp engine needs llama-cpp-python")
    from dhrd.cot.baseline import LlamaCppEngine
    from dhrd.modeling import load_tokenizer

    tokenizer = load_tokenizer(smollm2)
    queries, gold = zero_shot_queries("rte", tokenizer, str(shared_superglue))
    engine = LlamaCppEngine(SHARED_GGUF, threads=2)
    text = tokenizer.decode(queries[0].prompt_ids)
    assert engine.llm.tokenize(text.encode(), add_bos=False, special=True) == queries[0].prompt_ids
    decoded = engine.run(queries[:2], greedy_settings(24), 1, progress=False)
    assert all(d.text.strip() and 0 < d.new_tokens <= 24 for d in decoded)
    predictions = example_predictions("rte", queries[:2], decoded)
    assert set(predictions.labels) == {q.group for q in queries[:2]}
    with pytest.raises(DHRDInputError, match="GGUF file not found"):
        LlamaCppEngine(SHARED_GGUF.with_name("missing.gguf"))


def test_a_failing_torch_compile_is_reported_not_fatal(monkeypatch, tiny_backbone, superglue_dir):
    from dhrd.benchmarks.timing import fast_path_switches
    from dhrd.modeling import build_classifier

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    model, tokenizer, _ = build_classifier(str(tiny_backbone), ("No", "Yes"))
    rows = load_task_split("cb", "validation", "yesno", superglue_dir)
    switches = fast_path_switches(model, tokenizer, rows, 4, 1, bf16=False, compile_=True)
    assert switches[-1]["examples_per_s"] is None and switches[-1]["error"] == "no C++ compiler found"
    assert switches[-1]["ratio_to_default"] is None and switches[0]["ratio_to_default"] == 1.0


@pytest.mark.slow
def test_compiled_inference_gives_the_same_probabilities(tiny_backbone, superglue_dir):
    from dhrd.modeling import build_classifier

    model, tokenizer, _ = build_classifier(str(tiny_backbone), ("No", "Yes"))
    texts = [e.text for e in load_task_split("cb", "validation", "yesno", superglue_dir)]
    eager = predict_proba(model, tokenizer, texts, 4, bf16=False, progress=False)
    compiled = predict_proba(model, tokenizer, texts, 4, bf16=False, progress=False, compile=True)
    np.testing.assert_allclose(compiled, eager, atol=1e-5)


def test_vllm_engine_hands_token_prompts_and_settings_to_vllm(monkeypatch):
    import sys
    import types

    calls = []

    class FakeLLM:
        def __init__(self, model, seed, dtype):
            calls.append(("init", model, seed, dtype))

        def generate(self, prompts, sampling, use_tqdm):
            calls.append(("generate", [p["prompt_token_ids"] for p in prompts], sampling))
            out = types.SimpleNamespace(text="Answer: Yes", token_ids=[1, 2, 3])
            return [types.SimpleNamespace(outputs=[out]) for _ in prompts]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = FakeLLM, lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    from dhrd.cot.baseline import PAPER_SETTINGS, VLLMEngine

    engine = VLLMEngine("some/model", seed=3)
    queries = [Query(str(i), [i, i + 1], YES_NO) for i in range(3)]
    decoded = engine.run(queries, greedy_settings(40), batch_size=2, progress=False)
    assert [c[1] for c in calls if c[0] == "generate"] == [[[0, 1], [1, 2]], [[2, 3]]]
    assert calls[1][2] == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 40, "seed": 0}
    assert all(d.text == "Answer: Yes" and d.new_tokens == 3 for d in decoded)
    engine.run(queries[:1], PAPER_SETTINGS, 1, seed=5, progress=False)
    assert calls[-1][2] == {"temperature": 0.1, "top_p": 0.7, "max_tokens": 500, "seed": 5}


def test_vllm_is_skipped_without_a_gpu(monkeypatch, caplog):
    import sys
    import types

    from dhrd.benchmarks.benchmark import _vllm_usable

    assert not _vllm_usable(BenchmarkArguments(engines=("transformers",)))
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not _vllm_usable(BenchmarkArguments())
    assert "no GPU" in caplog.text
