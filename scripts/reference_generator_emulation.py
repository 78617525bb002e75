# ruff: noqa: E501
"""python scripts/reference_generator_emulation.py http://127.0.0.1:8080/v1 64 [superglue dir]

Emulates the reference set's generator (shared/data/rationales/README.md, prompt lc-v3-fewshot) on RTE:
system + 2 few-shot turns + the example, 16 requests in flight, greedy, 64 tokens. Measures examples/s."""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import openai

url, n = sys.argv[1], int(sys.argv[2])
data = sys.argv[3] if len(sys.argv) > 3 else "../shared/data/superglue"
client = openai.OpenAI(base_url=url, api_key="x", timeout=600)
system = 'You are a helpful teacher. Each message gives a problem together with its correct answer. The problem asks whether a premise entails a hypothesis. Reply with 1-3 short sentences that explain why the given answer is correct, pointing to the words in the text that show it. Start directly with the reasoning: do not begin with "Answer", "Yes" or "No", and do not simply repeat the answer.'
desc = {
    "entailment": "the premise entails the hypothesis (the hypothesis follows from the premise).",
    "not_entailment": "the premise does not entail the hypothesis (the hypothesis does not follow from the premise).",
}
shots = [
    (
        "Premise: The art museum, which opened in 1998 in the center of Bilbao, attracts about a million visitors a year.\nHypothesis: The art museum is located in Bilbao.\nCorrect answer: "
        + desc["entailment"],
        "The premise says the museum opened in the center of Bilbao, so it is located in Bilbao.",
    ),
    (
        "Premise: Officials said the new bridge over the river will cost $40 million and should be finished by 2012.\nHypothesis: The new bridge was finished in 2012.\nCorrect answer: "
        + desc["not_entailment"],
        "The premise only reports a plan that the bridge should be finished by 2012; it does not say that the bridge was actually completed then.",
    ),
]
rows = [json.loads(line) for line in open(f"{data}/RTE/train.jsonl")][:n]


def one(r):
    msgs = [{"role": "system", "content": system}]
    for u, a in shots:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    msgs.append(
        {
            "role": "user",
            "content": f"Premise: {r['premise']}\nHypothesis: {r['hypothesis']}\nCorrect answer: {desc[r['label']]}",
        }
    )
    out = client.chat.completions.create(
        model="m", messages=msgs, temperature=0, max_tokens=64, seed=0, extra_body={"top_k": 1}
    )
    return out.usage.completion_tokens


t = time.perf_counter()
with ThreadPoolExecutor(16) as pool:
    toks = list(pool.map(one, rows))
s = time.perf_counter() - t
print(
    json.dumps(
        {"examples": n, "seconds": round(s, 1), "examples_per_s": round(n / s, 3), "gen_tok_s": round(sum(toks) / s, 1)}
    )
)
