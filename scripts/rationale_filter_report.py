"""How many rationales each quality check of ``dhrd rationales`` flags, with examples: on a reference file of
rationales for a SuperGLUE task (``--task cb --rationales ../shared/data/rationales/CB/train.jsonl``) or on a
teacher cache of your own file (``--train-file`` and its column options, ``--rationales <cache>/train.jsonl``).

Each row is checked again with every check (``dhrd.teacher.prompts.CHECKS``): a cache row's raw ``output`` (cut by the
token budget where its row says ``truncated``), a reference row's ``rationale`` (no sentinel: a whole answer).
The report counts, per check, the rows it flags and the rows only it flags, the rows the checks before this
version (empty, truncated, repetitive, leak, contradicts) drop and the rows all of them drop, and shows the
first ``--examples`` flagged rows of each check.

    python scripts/rationale_filter_report.py --task cb --rationales ../shared/data/rationales/CB/train.jsonl \
        --output results/rationale-filter-cb-reference.md
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from dhrd.data.inputs import Columns, parse_label_map
from dhrd.data.tables import id_key
from dhrd.data.tasks import TASK_ANSWERS
from dhrd.provenance import command_line
from dhrd.teacher.prompts import CHECKS, SENTINEL, check_output, conclusion_answer, file_items, task_items

BEFORE = ("empty", "truncated", "repetitive", "leak", "contradicts")
MEANING = {
    "empty": "no explanation",
    "truncated": "cut by the token budget before the sentinel",
    "repetitive": "fewer than half of the word trigrams distinct",
    "leak": "Yes/True/False/correct/incorrect or 'No' as an answer, in the teacher's own words (not copied)",
    "contradicts": "the teacher's `Answer:` line names another label",
    "short": "fewer than 5 words, or a fragment ending on a word like 'is', 'the', 'of'",
    "conclusion": "the last sentence that names a label asserts another label, or denies the gold one",
    "invented": "writes an `Answer: ...` that the example's text never holds",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rationales", required=True, type=Path)
    parser.add_argument("--task")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-file")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--text-pair-column")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--id-column")
    parser.add_argument("--label-names")
    parser.add_argument("--instruction")
    parser.add_argument("--title", default=None)
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    if args.task:
        items, _ = task_items(args.task, args.data_dir)
        answers = TASK_ANSWERS[args.task]
    else:
        columns = Columns(
            args.text_column, args.label_column, args.text_pair_column, args.id_column,
            parse_label_map(args.label_names),
        )  # fmt: skip
        items, answers = file_items(args.train_file, columns, instruction=args.instruction)
    by_id = {id_key(item.idx): item for item in items}
    rows = [json.loads(line) for line in args.rationales.read_text().splitlines() if line.strip()]

    flagged: dict[str, list] = {check: [] for check in CHECKS}
    only: Counter = Counter()
    dropped_before = dropped_now = 0
    for row in rows:
        item = by_id[id_key(row["idx"])]
        raw = row.get("output")
        if raw is None:  # a reference file: the rationale is the whole answer
            text, sentinel, finish = row["rationale"], "\0", "stop"
        else:
            text, sentinel = raw, SENTINEL
            finish = "length" if "truncated" in (row.get("problems") or []) else "stop"
        checked = check_output(text, item, answers, sentinel, CHECKS, finish)
        problems = checked.problems
        for problem in problems:
            flagged[problem].append((row, item, checked))
        if len(problems) == 1:
            only[problems[0]] += 1
        dropped_before += any(p in BEFORE for p in problems)
        dropped_now += bool(problems)

    command = command_line(program=("python", "scripts/rationale_filter_report.py"))
    n = len(rows)
    lines = [
        f"# {args.title or 'Rationale quality filter'}",
        "",
        f"{n} rationales from `{args.rationales}`, each checked with every check of `dhrd rationales` "
        "(`dhrd.teacher.prompts.check_output`).",
        "",
        "| check | what it flags | rows flagged | only this check | share |",
        "|---|---|---|---|---|",
    ]
    for check in CHECKS:
        count = len(flagged[check])
        lines.append(f"| {check} | {MEANING[check]} | {count} | {only[check]} | {100 * count / max(n, 1):.1f}% |")
    lines += [
        "",
        f"Dropped (any check flags the row, as `--on-problem drop` or a retry that never passes does): "
        f"{dropped_before} of {n} with the checks before this version ({', '.join(BEFORE)}), "
        f"{dropped_now} of {n} with all of them.",
        "",
    ]
    for check in CHECKS:
        if not flagged[check]:
            continue
        lines += [f"## {check}: the first {min(args.examples, len(flagged[check]))} of {len(flagged[check])}", ""]
        for row, item, checked in flagged[check][: args.examples]:
            text = (checked.rationale or row.get("output") or "").replace("\n", " ")
            text = text if len(text) <= 400 else text[:400] + " ..."
            extra = ""
            if check == "conclusion":
                sentence, _ = conclusion_answer(checked.rationale or "", answers, item.answer)
                extra = f' Conclusion read: "{sentence}"'
            if check == "contradicts":
                extra = f" Teacher's answer: {checked.teacher_answer}."
            lines.append(f"- id {row['idx']} (gold {item.label}): {text}{extra}")
        lines.append("")
    lines += ["Command:", "", "```bash", command, "```", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines[4 : 6 + len(CHECKS) + 3]))


if __name__ == "__main__":
    main()
