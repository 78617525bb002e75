"""The chain-of-thought baseline: the same backbone writes its reasoning, then its answer, and a parser maps
the answer text to a label.

Two CoT systems, as in the paper (Table 3 and §6):

* **zero-shot**: the untouched backbone, prompted with the task's instruction (through its chat template
  where it has one) to reason step by step and end with ``Answer: <one of the task's answer words>``; one
  decode per original example, native labels (CB's three relations, COPA's two options; an own-data
  task's label names).
* **fine-tuned** ("reasoning/CoT fine-tuned", alpha=1, beta=0): a model trained by ``dhrd train --method dhrd
  --alpha 1 --beta 0 --keep-reasoning-head`` continues ``x + "Reasoning:"`` with the LM head, exactly the
  sequence it was trained on, and its ``Final Answer:`` is parsed. Its inputs are the classifier's rows, so
  CB and COPA decode once per candidate and the example's answer is the one candidate it says Yes to.

An output the parser cannot read still answers: its answer words are scored by likelihood after the answer
cue, on the same engine, inside the timed pass (``cot_likelihood``); how many examples were answered by the
text and how many by likelihood is reported beside the task's official metric. Decoding runs through an
*engine*: transformers' batched ``generate`` with the KV cache, llama.cpp (llama-cpp-python) on the
backbone's GGUF, or vLLM on a GPU.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.examples import Example, TeacherItem
from ..data.inputs import ANSWER_PREFIX, REASON_PREFIX
from ..data.task_metrics import label_metrics
from ..data.tasks import TASKS, chooses_candidate
from ..errors import DHRDInputError
from ..runtime import bf16_supported, device
from ..teacher.generation import chat_prompt_ids, generate_batches
from ..teacher.prompts import TASK_ANSWERS, match_answer, parse_answer, task_items
from .likelihood import answer_likelihoods, continuation_logprobs, rows_to_score

ZERO_SHOT_SYSTEM = (
    "Answer the question. Let's think step by step: reason in 2-5 sentences, then, on a new line, write "
    '"Answer: " followed by exactly one of: {answers}.'
)
ZERO_SHOT_CUE = "\nAnswer: "  # what the zero-shot prompt asks the answer to follow, as the likelihood's cue


# ------------------------------------------------------------------------------------------ decoding
@dataclass(frozen=True)
class DecodeSettings:
    """How CoT decodes. ``paper`` is the paper's QPS setting (§6); ``greedy`` is the fair one whose budget
    fits the rationales the model was trained on."""

    name: str
    do_sample: bool
    max_new_tokens: int
    temperature: float | None = None
    top_p: float | None = None

    def describe(self) -> str:
        if self.do_sample:
            return f"sampling T={self.temperature} top_p={self.top_p}, max_new_tokens={self.max_new_tokens}"
        return f"greedy, max_new_tokens={self.max_new_tokens}"


PAPER_SETTINGS = DecodeSettings("paper", True, 500, temperature=0.1, top_p=0.7)


def greedy_settings(max_new_tokens: int) -> DecodeSettings:
    return DecodeSettings("greedy", False, max_new_tokens)


def fitted_max_new_tokens(rationales: Iterable[str], tokenizer, quantile: float = 0.95, answer_room: int = 16) -> int:
    """The fair greedy budget: the ``quantile`` of the rationales' token lengths (with the "Reasoning:"
    prefix), plus room for "Final Answer:" and the answer."""
    lengths = [len(tokenizer(REASON_PREFIX + r, add_special_tokens=False)["input_ids"]) for r in rationales if r]
    if not lengths:
        raise DHRDInputError("no rationales to fit the greedy budget to: pass --greedy-max-new-tokens")
    return int(np.quantile(lengths, quantile)) + answer_room


@dataclass
class Query:
    """One decode: its prompt (token ids, and chat messages for chat engines) and how to read its answer."""

    group: str  # the original example it belongs to
    prompt_ids: list[int]
    answers: dict[str, str]  # answer word -> label (native label, or "Yes"/"No" for candidate rows)
    candidate: str | None = None  # the candidate this row asks about (CB/COPA in the yes/no format)
    messages: list[dict] | None = None
    cue: str = ZERO_SHOT_CUE  # what the answer word follows, where its answer is chosen by likelihood


@dataclass
class Decoded:
    text: str
    new_tokens: int
    seconds: float  # the wall time of the batch it was decoded in: this request's latency


class TransformersEngine:
    """``generation.generate_batches`` (the KV cache on length-sorted, left-padded batches), bf16 weights where
    the hardware has bf16 (decoding is bound by reading the weights, so half the bytes is the speed-up)."""

    name = "transformers"
    max_batch_size: int | None = None

    def __init__(self, lm, tokenizer, bf16: bool | None = None):
        self.bf16 = bf16_supported() if bf16 is None else bf16
        self.lm = lm.to(device=device(), dtype=torch.bfloat16 if self.bf16 else torch.float32).eval()
        self.tokenizer = tokenizer

    def run(self, queries: Sequence[Query], settings: DecodeSettings, batch_size: int, seed: int = 0, progress=True):
        results: list[Decoded | None] = [None] * len(queries)
        batches = generate_batches(
            self.lm,
            self.tokenizer,
            [q.prompt_ids for q in queries],
            batch_size=batch_size,
            max_new_tokens=settings.max_new_tokens,
            do_sample=settings.do_sample,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=seed,
        )
        bar = tqdm(total=len(queries), desc=f"CoT {settings.name} b{batch_size}", unit="req", disable=not progress)
        with bar:
            for batch in batches:
                for i, output in zip(batch.indices, batch.outputs):
                    results[i] = Decoded(output.text, output.new_tokens, batch.seconds)
                bar.update(len(batch.indices))
        return results

    def score(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[float]:
        """log P(continuation | context) of each (context ids, continuation ids), in one forward pass."""
        pad = self.tokenizer.pad_token_id
        return continuation_logprobs(self.lm, pairs, pad if pad is not None else self.tokenizer.eos_token_id)


class LlamaCppEngine:
    """llama.cpp through llama-cpp-python on a GGUF file: the optimized CPU engine, on the backbone's own
    (quantised) weights. It decodes one sequence at a time, so it is measured at batch size 1 only.

    Answers chosen by likelihood are scored by llama.cpp too, on the same quantised weights and in the same
    context (``score``), so its examples/s stays the time of one engine answering."""

    name = "llama.cpp"
    max_batch_size = 1

    def __init__(self, gguf_path: str | Path, threads: int | None = None, n_ctx: int = 4096):
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise DHRDInputError(
                "the llama.cpp engine needs llama-cpp-python: bash scripts/install_llama_cpp_server.sh"
            ) from error
        path = Path(gguf_path)
        if not path.is_file():
            raise DHRDInputError(f"{path}: GGUF file not found (the llama.cpp engine runs on the backbone's GGUF)")
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads or torch.get_num_threads(), verbose=False)
        self._context: list[int] | None = None  # the context ``score`` last evaluated, and its logits
        self._context_logits: np.ndarray | None = None

    def run(self, queries: Sequence[Query], settings: DecodeSettings, batch_size: int, seed: int = 0, progress=True):
        results = []
        for k, query in enumerate(
            tqdm(queries, desc=f"CoT llama.cpp {settings.name}", unit="req", disable=not progress)
        ):
            began = time.perf_counter()
            # the same prompt token ids as the transformers engine (the tokenizer was read from this GGUF)
            out = self.llm.create_completion(
                prompt=query.prompt_ids,
                max_tokens=settings.max_new_tokens,
                temperature=settings.temperature if settings.do_sample else 0.0,
                top_p=settings.top_p if settings.do_sample else 1.0,
                top_k=0 if settings.do_sample else 1,
                seed=seed + k,
            )
            seconds = time.perf_counter() - began
            results.append(Decoded(out["choices"][0]["text"], out["usage"]["completion_tokens"], seconds))
        return results

    def score(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[float]:
        """log P(continuation | context) of each pair, one sequence at a time. The context is evaluated once
        (past the prefix it shares with what the cache holds: a query's answer words share all of it, queries
        their chat system turn) and each continuation token after it; llama.cpp keeps only the last
        position's logits unless built with ``logits_all``, so a token is read from the logits before it."""
        totals = []
        for context, continuation in pairs:
            logits = self._evaluate(context)
            total = 0.0
            for k, token in enumerate(continuation):
                total += float(logits[token] - np.logaddexp.reduce(logits))
                if k + 1 < len(continuation):
                    self.llm.eval([token])
                    logits = self._last_logits()
            totals.append(total)
        return totals

    def _evaluate(self, context: list[int]) -> np.ndarray:
        """The logits after ``context``, evaluating only the part of it the cache does not hold."""
        cached = list(self.llm.input_ids[: self.llm.n_tokens])
        if cached[: len(context)] == context and self._context == context:
            self.llm.n_tokens = len(context)  # drop the previous continuation's tokens (eval removes them)
            return self._context_logits
        shared = next((k for k, (a, b) in enumerate(zip(cached, context)) if a != b), min(len(cached), len(context)))
        self.llm.n_tokens = min(shared, len(context) - 1)  # at least one token to evaluate: its logits are kept
        self.llm.eval(context[self.llm.n_tokens :])
        self._context, self._context_logits = list(context), self._last_logits()
        return self._context_logits

    def _last_logits(self) -> np.ndarray:
        import llama_cpp

        logits = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(logits, shape=(self.llm.n_vocab(),)).astype(np.float64)


class VLLMEngine:
    """vLLM on a GPU, on a model directory (the backbone, or the CoT fine-tuned LM saved as one). vLLM
    schedules the requests of each ``generate`` call with continuous batching; batch size is the number of
    requests handed to it at once."""

    name = "vllm"
    max_batch_size: int | None = None

    def __init__(self, model_dir: str | Path, seed: int = 0):
        try:
            from vllm import LLM
        except ImportError as error:
            raise DHRDInputError("the vllm engine needs vLLM on a GPU machine: pip install vllm") from error
        self.llm = LLM(model=str(model_dir), seed=seed, dtype="bfloat16")

    def run(self, queries: Sequence[Query], settings: DecodeSettings, batch_size: int, seed: int = 0, progress=True):
        from vllm import SamplingParams

        sampling = SamplingParams(
            temperature=settings.temperature if settings.do_sample else 0.0,
            top_p=settings.top_p if settings.do_sample else 1.0,
            max_tokens=settings.max_new_tokens,
            seed=seed,
        )
        results = []
        for start in tqdm(range(0, len(queries), batch_size), desc=f"CoT vllm {settings.name}", disable=not progress):
            chunk = queries[start : start + batch_size]
            began = time.perf_counter()
            outputs = self.llm.generate([{"prompt_token_ids": q.prompt_ids} for q in chunk], sampling, use_tqdm=False)
            seconds = time.perf_counter() - began
            results += [Decoded(o.outputs[0].text, len(o.outputs[0].token_ids), seconds) for o in outputs]
        return results

    def score(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[float]:
        """log P(continuation | context) of each pair from vLLM's prompt log-probabilities of context +
        continuation (one ``generate`` of one new token; its prefix cache shares a query's context)."""
        from vllm import SamplingParams

        sampling = SamplingParams(max_tokens=1, prompt_logprobs=1, temperature=0.0)
        prompts = [{"prompt_token_ids": list(c) + list(k)} for c, k in pairs]
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        totals = []
        for (_, continuation), output in zip(pairs, outputs):
            said = output.prompt_logprobs[-len(continuation) :]
            totals.append(sum(position[token].logprob for position, token in zip(said, continuation)))
        return totals


# --------------------------------------------------------------------------------------------- queries
def zero_shot_queries(
    task: str, tokenizer, data_dir: str | None = None, split: str = "validation", groups: Sequence[str] | None = None
) -> tuple[list[Query], dict[str, str]]:
    """One chat prompt per original example and the gold native label of each (``groups`` keeps only those
    examples, in that order)."""
    if task not in TASKS or not TASKS[task].zero_shot_cot:  # e.g. MultiRC: the teacher's items are answers
        raise DHRDInputError(f"zero-shot CoT does not support {task}: its answers are per candidate, not per example")
    items, _ = task_items(task, data_dir, split)
    by_group = {f"{task}-{item.idx}": item for item in items}
    wanted = list(groups) if groups is not None else list(by_group)
    queries = chat_queries([by_group[g] for g in wanted], wanted, TASK_ANSWERS[task], tokenizer)
    return queries, {group: by_group[group].label for group in wanted}


def own_data_queries(
    examples: Sequence[Example], items: Sequence[TeacherItem], label_names: Sequence[str], tokenizer
) -> tuple[list[Query], dict[str, str]]:
    """Zero-shot prompts for the user's own rows: one per example of ``examples``, its input the teacher's view
    of its row (``items``, keyed as the rows are), its answer words the label names; gold from the examples."""
    by_key = {str(item.idx): item for item in items}
    groups = list(dict.fromkeys(e.group for e in examples))
    answers = {name: name for name in label_names}  # own labels are their own native labels
    queries = chat_queries([by_key[g] for g in groups], groups, answers, tokenizer)
    return queries, {e.group: label_names[e.label] for e in examples}


def chat_queries(
    items: Sequence[TeacherItem], groups: Sequence[str], answers: dict[str, str], tokenizer
) -> list[Query]:
    """The zero-shot prompt of each item: the system turn names the answer words, the user turn is the item's
    input as the teacher sees it, then the possible answers."""
    system = ZERO_SHOT_SYSTEM.format(answers=" / ".join(answers))
    queries = []
    for group, item in zip(groups, items):
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": f"{item.input}\nPossible answers: {' / '.join(answers)}"},
        ]
        queries.append(Query(group, chat_prompt_ids(tokenizer, messages), answers, messages=messages))
    return queries


def reasoning_prompts(texts: Sequence[str], tokenizer) -> list[list[int]]:
    """``x + "Reasoning:"`` as the reasoning head was trained on it: the ids of ``x`` and of "Reasoning:"
    tokenised separately and concatenated."""
    reason = tokenizer(REASON_PREFIX, add_special_tokens=False)["input_ids"]
    return [ids + reason for ids in tokenizer(list(texts))["input_ids"]]


def finetuned_queries(examples: Sequence[Example], tokenizer, label_names: Sequence[str]) -> list[Query]:
    """The classifier's rows as the CoT-fine-tuned model was trained on them (its answer cue: "Final Answer:")."""
    answers = {name: name for name in label_names}
    prompts = reasoning_prompts([e.text for e in examples], tokenizer)
    return [Query(e.group, ids, answers, e.candidate, cue=ANSWER_PREFIX) for e, ids in zip(examples, prompts)]


def finetuned_gold(examples: Sequence[Example], label_names: Sequence[str]) -> dict[str, str]:
    """Each original example's native gold label, from its classifier rows."""
    gold = {}
    for example in examples:
        if example.candidate is not None and chooses_candidate(example.task):
            if example.label == 1:
                gold[example.group] = example.candidate
        else:
            gold[example.group] = _native(example.task, label_names[example.label])
    return gold


def _native(task: str, word: str) -> str:
    """A yes/no row's answer as the task's native label (RTE: Yes -> entailment); native words pass through."""
    return TASK_ANSWERS.get(task, {}).get(word, word) if word in ("Yes", "No") else word


# ---------------------------------------------------------------------------------------------- parsing
# "the answer is X", or "Answer: X" in the middle of a line
_ANSWER_IS = re.compile(r"\banswer\s*(?:is\s*:?|\**\s*:)\s*\**\s*\"?([^\n.\"*]+)", re.IGNORECASE)


def parse_label(text: str, answers: dict[str, str]) -> str | None:
    """The label an output commits to, or None. Its last "Answer: X", "Final Answer:\\nX" or "the answer
    is X" (case, markdown and trailing words forgiven), else an output that is only the answer word."""
    words = list(answers)
    for candidate in (_answer_is(text, words), parse_answer(text, words), _bare(text, words)):
        if candidate is not None:
            return answers[candidate]
    return None


def _answer_is(text: str, words: Sequence[str]) -> str | None:
    """The last "the answer is X" that names an answer ("Answer: Yes. The answer is clear." is Yes)."""
    for said in reversed(_ANSWER_IS.findall(text)):
        answer = match_answer(said, words)
        if answer is not None:
            return answer
    return None


def _bare(text: str, words: Sequence[str]) -> str | None:
    said = re.sub(r"^\W+|\W+$", "", text).lower()  # "- Neither", "**Yes**."
    return next((w for w in words if said == w.lower()), None)


@dataclass
class Predictions:
    labels: dict[str, str | None]  # original example -> predicted native label (None: scored as wrong)
    unparsed_rows: int = 0
    ambiguous_examples: int = 0  # candidate rows that said Yes to none or to several candidates
    texts: list[str] = field(default_factory=list)
    parsed_examples: int = 0  # examples answered by their outputs' text alone
    likelihood_examples: int = 0  # examples whose answer needed the likelihood of an answer word


def parsed_labels(queries: Sequence[Query], decoded: Sequence[Decoded]) -> list[str | None]:
    return [parse_label(out.text, query.answers) for query, out in zip(queries, decoded)]


def example_predictions(
    task: str,
    queries: Sequence[Query],
    decoded: Sequence[Decoded],
    likelihoods: dict[int, dict[str, float]] | None = None,
) -> Predictions:
    """Parse every output and fold candidate rows back into one prediction per original example.

    ``likelihoods`` (row -> answer word -> log P, from ``cot_likelihood``) answer for the rows the parser
    cannot read, and choose among the candidates of an example whose rows say Yes to none or several; without
    them such an example is scored as wrong."""
    likelihoods = likelihoods or {}
    labels: dict[str, str | None] = {}
    candidate_rows: dict[str, list[tuple[Query, str | None, dict[str, float] | None]]] = defaultdict(list)
    by_likelihood: set[str] = set()
    said = parsed_labels(queries, decoded)
    for i, (query, label) in enumerate(zip(queries, said)):
        scores = likelihoods.get(i)
        if label is None and scores:
            label = query.answers[max(scores, key=scores.get)]
            by_likelihood.add(query.group)
        if query.candidate is not None:
            candidate_rows[query.group].append((query, label, scores))
        else:
            labels[query.group] = None if label is None else _native(task, label)
    ambiguous = 0
    for group, rows in candidate_rows.items():
        chosen = [query.candidate for query, label, _ in rows if label == "Yes"]
        if len(chosen) == 1:
            labels[group] = chosen[0]
            continue
        ambiguous += 1
        labels[group] = _likeliest_yes(rows, chosen)
        if labels[group] is not None:
            by_likelihood.add(group)
    answered = sum(label is not None for label in labels.values())
    likely = len(by_likelihood & set(labels))
    return Predictions(labels, said.count(None), ambiguous, [d.text for d in decoded], answered - likely, likely)


def _likeliest_yes(rows: list[tuple[Query, str | None, dict[str, float] | None]], said_yes: list[str]) -> str | None:
    """The candidate whose row gives Yes the most likelihood over No, among those said Yes to (all when none
    is); None where a row has no likelihoods."""
    margins = {}
    for query, _, scores in rows:
        if said_yes and query.candidate not in said_yes:
            continue
        if not scores:
            return None
        word = {label: word for word, label in query.answers.items()}
        margins[query.candidate] = scores[word["Yes"]] - scores[word["No"]]
    return max(margins, key=margins.get) if margins else None


def score(task: str, predictions: Predictions, gold: dict[str, str]) -> dict:
    groups = list(gold)
    return label_metrics(task, [predictions.labels.get(g) for g in groups], [gold[g] for g in groups])


@dataclass
class CoTScore:
    """A CoT system decoded on a set of queries and scored: the last pass's outputs, what they predict, the
    task's official metrics, and the wall time of every pass."""

    metrics: dict
    predictions: Predictions
    decoded: list[Decoded]
    pass_seconds: list[float]

    def summary(self) -> dict:
        """What a CoT result reports besides its timing: the score, its metrics, how many examples were answered
        by the text and how many by likelihood, and what failed to parse."""
        predictions = self.predictions
        texts = predictions.texts
        return {
            "score": self.metrics["score"],
            "metrics": self.metrics,
            "parsed_examples": predictions.parsed_examples,
            "likelihood_examples": predictions.likelihood_examples,
            "unparsed_rows": predictions.unparsed_rows,
            "ambiguous_examples": predictions.ambiguous_examples,
            "sample_output": texts[0][:400] if texts else None,
        }


def answer(
    task: str, engine, tokenizer, queries: Sequence[Query], decoded: Sequence[Decoded], batch_size: int
) -> tuple[Predictions, list[Decoded]]:
    """Every example's answer: parsed from its outputs, else chosen by likelihood on ``engine``
    (``cot_likelihood``); and the decodes with the scored rows' latency grown by their scoring."""
    rows = rows_to_score(queries, parsed_labels(queries, decoded))
    likelihoods, decoded = answer_likelihoods(engine, tokenizer, queries, decoded, rows, batch_size)
    return example_predictions(task, queries, decoded, likelihoods), decoded


def decode_and_score(
    task: str,
    engine,
    queries: Sequence[Query],
    gold: dict[str, str],
    settings: DecodeSettings,
    *,
    tokenizer,
    batch_size: int,
    seed: int = 0,
    repeats: int = 1,
    warm_up: bool = False,
    progress: bool = True,
) -> CoTScore:
    """Decode and answer every query ``repeats`` times (pass r seeded ``seed + r``), after a 4-token greedy
    warm-up of one query if asked, and score the last pass's answers with the task's official metric. A pass
    is the decode and the likelihood of the answers the text does not give: both are the system's time."""
    if warm_up:  # its 4 tokens seldom hold an answer: the scoring is warmed up too
        short = replace(settings, do_sample=False, max_new_tokens=4, temperature=None, top_p=None)
        answer(task, engine, tokenizer, queries[:1], engine.run(queries[:1], short, 1, seed, progress=False), 1)
    times, decoded, predictions = [], [], Predictions({})
    for r in range(repeats):
        start = time.perf_counter()
        decoded = engine.run(queries, settings, batch_size, seed + r, progress)
        predictions, decoded = answer(task, engine, tokenizer, queries, decoded, batch_size)
        times.append(time.perf_counter() - start)
    return CoTScore(score(task, predictions, gold), predictions, list(decoded), times)


__all__ = [
    "PAPER_SETTINGS",
    "CoTScore",
    "DecodeSettings",
    "LlamaCppEngine",
    "Predictions",
    "Query",
    "TransformersEngine",
    "ZERO_SHOT_CUE",
    "answer",
    "chat_queries",
    "VLLMEngine",
    "decode_and_score",
    "example_predictions",
    "finetuned_gold",
    "finetuned_queries",
    "fitted_max_new_tokens",
    "greedy_settings",
    "own_data_queries",
    "parse_label",
    "reasoning_prompts",
    "score",
    "zero_shot_queries",
]
