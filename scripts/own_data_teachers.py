"""Do real small teachers write usable rationales for your own file? `dhrd rationales` at its default settings
(the paper's label-conditioned prompt, greedy, 160 new tokens, bad answers re-asked twice then dropped) on CB
exported as a plain CSV with integer labels, named with --label-names and stated with --instruction, for each
teacher through llama.cpp's `llama-server`. Reports kept/dropped counts, the problems found, rows/s, and sample
rationales. Each teacher's cache is resumable (run the same command again to continue).

    python scripts/own_data_teachers.py --server-bin "$(bash scripts/build_llama_server.sh)" \
        --teacher qwen2.5-coder-0.5b=<gguf> --teacher qwen2.5-coder-1.5b=<gguf>
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from superglue_to_csv import EXPORTS, export  # noqa: E402
from teacher_throughput import LlamaServer  # noqa: E402

from dhrd.data.inputs import Columns, parse_label_map  # noqa: E402
from dhrd.data.tasks import TASKS  # noqa: E402
from dhrd.runtime import write_json_atomic, write_text_atomic  # noqa: E402
from dhrd.teacher.teachers import make_rationales  # noqa: E402

RUNS = Path("runs/own-data-teachers")
OUT = Path("results/own-data-teachers-cpu")


def run_teacher(name: str, gguf: str, binary: str, examples: int, parallel: int, threads: int) -> dict:
    data = export("cb", RUNS / "cb-csv")
    (text, pair), instruction = EXPORTS["cb"]
    names = ",".join(f"{i}={n}" for i, n in enumerate(TASKS["cb"].native_labels))
    server = LlamaServer(binary, gguf, parallel, 1024, threads)
    try:
        path, summary = make_rationales(
            train_file=data["train"], columns=Columns(text, "label", pair, "id", parse_label_map(names)),
            instruction=instruction, teacher=name, base_url=server.url, concurrency=parallel,
            output=RUNS / name, max_examples=examples, subset_seed=42, timeout=600,
        )  # fmt: skip
    finally:
        server.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {"teacher": name, "cache": str(path), "summary": summary, "rows": rows}


def sample(rows: list[dict], n: int = 6) -> list[dict]:
    """Kept rationales taken in turn from each label, in cache order (the first rows are mostly one label)."""
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("rationale"):
            by_label.setdefault(row["label"], []).append(row)
    chosen: list[dict] = []
    while len(chosen) < n and any(by_label.values()):
        for label in list(by_label):
            if by_label[label] and len(chosen) < n:
                chosen.append(by_label[label].pop(0))
    return chosen


def markdown(results: list[dict], command: str) -> str:
    lines = [
        "# Own data: teacher rationales for a plain CSV with named labels",
        "",
        "CB exported as a CSV (`scripts/superglue_to_csv.py --task cb`), its integer labels named with",
        "`--label-names 0=entailment,1=contradiction,2=neutral` and the task stated with `--instruction 'Does the",
        "premise entail the hypothesis, contradict it, or neither?'`; `dhrd rationales` at its defaults (the",
        "paper's label-conditioned prompt, greedy, 160 new tokens, re-asked twice when a check fails, then",
        "dropped) on the 50 examples `dhrd train --max-train-examples 50` trains on, through `llama-server`.",
        "",
        "| teacher | examples | kept (pass every check) | dropped | kept share | problems of the final answers | "
        "re-asks | rows/s | generated tok/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["summary"]
        status = Counter(row["status"] for row in r["rows"])  # the whole cache, over every invocation
        kept, dropped, total = status["ok"], status["dropped"], len(r["rows"])
        problems = dict(Counter(p for row in r["rows"] for p in row["problems"]))
        lines.append(
            f"| {r['teacher']} | {total} | {kept} | {dropped} | {100 * kept / max(total, 1):.0f}% | "
            f"{problems} | {s['retries']} | {s['rows_per_second']} | {s['generated_tokens_per_second']} |"
        )
    lines += [
        "",
        "Problems: those of the final answer of each row (a kept row has none). Re-asks, rows/s and tok/s: of the",
        "last invocation, which may have continued a cache; measured on 2 CPU cores shared with training runs,",
        "so not a speed figure (see results/teacher-throughput-cpu.md).",
    ]
    for r in results:
        lines += ["", f"## Sample rationales: {r['teacher']}", ""]
        for row in sample(r["rows"]):
            lines.append(f"- id {row['idx']} ({row['label']}): {row['rationale']}")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-bin", required=True)
    parser.add_argument("--teacher", action="append", required=True, help="name=path/to/model.gguf")
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--render", action="store_true", help="only rewrite the tables from the caches")
    options = parser.parse_args()
    results = []
    earlier = json.loads(OUT.with_suffix(".json").read_text())["results"] if OUT.with_suffix(".json").is_file() else []
    for spec in options.teacher:
        name, gguf = spec.split("=", 1)
        if options.render:
            found = next((r for r in earlier if r["teacher"] == name), None)
            if found is None:
                continue
            rows = [json.loads(line) for line in Path(found["cache"]).read_text().splitlines()]
            results.append({**found, "rows": rows})
        else:
            results.append(
                run_teacher(name, gguf, options.server_bin, options.examples, options.parallel, options.threads)
            )
        shown = [{k: v for k, v in r.items() if k != "rows"} for r in results]
        command = "python scripts/own_data_teachers.py " + " ".join(
            shlex.join(["--teacher", f"{t.split('=', 1)[0]}=<{Path(t.split('=', 1)[1]).name}>"])
            for t in options.teacher
        )
        write_json_atomic(OUT.with_suffix(".json"), {"results": shown, "command": command})
        write_text_atomic(OUT.with_suffix(".md"), markdown(results, command))


if __name__ == "__main__":
    main()
