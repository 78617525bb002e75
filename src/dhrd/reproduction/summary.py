"""The statistics of a run's finished cells: per task and method the score over seeds, the majority floor,
the paired comparisons with pooled, DHRD's gain beside the paper's, the averages and the caps."""

from __future__ import annotations

import json
import logging
import statistics

from ..data.tasks import task_rules
from .arguments import ReproduceArguments
from .cells import run_dir
from .methods import COT_METHODS, METHOD_RULES, PAIRED_METHODS
from .own_data import own_task, predictions_file
from .paper import paper_gains
from .result import ReproduceResult

logger = logging.getLogger(__name__)


def score_stats(values: list[float]) -> dict:
    """Mean, sample standard deviation (None for one value), count and the values."""
    return {
        "mean": round(statistics.fmean(values), 2),
        "std": round(statistics.stdev(values), 2) if len(values) > 1 else None,
        "n": len(values),
        "values": values,
    }


def summarise(args: ReproduceArguments, result: ReproduceResult) -> dict:
    """Per task and method: the score over seeds; per task: DHRD's relative gain over pooled beside the
    paper's, QPS of every method, and what was capped."""
    scores: dict[str, dict[str, list]] = {t: {} for t in args.tasks}
    qps: dict[str, dict] = {}
    for record in result.cells.values():
        task, method, value = record["task"], record["method"], record["result"]
        if record["kind"] == "qps":
            qps[task] = value["qps"]
        elif record["kind"] in ("train", "cot") and record["kind"] == METHOD_RULES[method].scored_by:
            scores[task].setdefault(method, []).append(value)
    paper = paper_gains()
    tasks = {}
    for task in args.tasks:
        methods = {}
        for method, runs in scores[task].items():
            methods[method] = {
                "score": score_stats([r["tasks"][task]["score"] for r in runs]),
                "metrics": {
                    k: round(statistics.fmean(r["tasks"][task][k] for r in runs), 2)
                    for k in task_rules(task).metrics
                    if all(k in r["tasks"][task] for r in runs)
                },
                "eval_examples": runs[0]["tasks"][task].get("examples"),
                "train_rows": runs[0].get("train_rows"),
                "rows_without_rationale": runs[0].get("rows_without_rationale"),
            }
            if method in COT_METHODS:  # how its answers were read, worth seeing beside a low CoT score
                # cells written before answers were chosen by likelihood have only the (then wrong) failures
                answered = (
                    ("parsed_examples", "likelihood_examples") if all("parsed_examples" in r for r in runs) else ()
                )
                for key in ("unparsed_rows", "ambiguous_examples", *answered):
                    methods[method][key] = sum(r.get(key) or 0 for r in runs)
        entry = {"methods": methods, "qps": qps.get(task), "caps": _caps(args, task), **_split(args, task)}
        skipped = {m: METHOD_RULES[m].skip_reason(task_rules(task)) for m in args.methods}
        if any(skipped.values()):
            entry["skipped"] = {m: why for m, why in skipped.items() if why}
        if methods:
            examples = evaluation_examples(args, task)
            entry["floor"] = task_floor(args, task, examples)
            entry["paired"] = paired_comparisons(args, task, examples)
        if "pooled" in methods and "dhrd" in methods:
            p, d = methods["pooled"]["score"]["mean"], methods["dhrd"]["score"]["mean"]
            entry["relative_gain_percent"] = round(100 * (d / p - 1), 2) if p else None
        entry["paper_relative_gain_percent"] = {b: g[task] for b, g in paper.items() if task in g}
        note = task_rules(task).not_comparable(args.data_dir)
        if note:
            entry["not_comparable"] = note
        tasks[task] = entry
    return {"tasks": tasks, "average": _average(args, tasks, paper)}


def _input_format(args: ReproduceArguments) -> str:
    return args.train.get("input_format", "yesno")


def _split(args: ReproduceArguments, task: str) -> dict:
    """The split a task is scored on, and where its examples come from (an own-data task's test file)."""
    own = own_task(args, task)
    if own is None:
        return {"split": "validation", "split_source": "the validation split"}
    return {"split": own.scored_split, "split_source": own.split_text()}


def evaluation_examples(args: ReproduceArguments, task: str) -> list:
    """The examples every classifier of ``task`` is scored on (the same capped, seeded sample): a SuperGLUE
    task's validation split, an own-data task's test file (else its validation split)."""
    from ..data.selection import sample_examples
    from ..data.task_splits import load_task_split

    own = own_task(args, task)
    if own is not None:
        return own.scored_examples(args)
    rows = load_task_split(task, "validation", _input_format(args), args.data_dir)
    return sample_examples(rows, args.eval_cap(task), args.subset_seed)


_FLOORS: dict[tuple, dict] = {}


def task_floor(args: ReproduceArguments, task: str, examples: list) -> dict:
    """The majority floor (best constant predictor) and chance score on the evaluated examples."""
    from ..data.task_metrics import floors

    key = (task, tuple(e.id for e in examples), _input_format(args))
    if key not in _FLOORS:
        own = own_task(args, task)
        names = own.label_names(args) if own else task_rules(task).label_names(_input_format(args))
        # keyed by the examples' task: an own-data task's rows all carry tasks.OWN_DATA's name
        _FLOORS[key] = floors(examples, _input_format(args), len(names))[examples[0].task]
    return _FLOORS[key]


def paired_comparisons(args: ReproduceArguments, task: str, examples: list) -> dict:
    """Each of ``PAIRED_METHODS`` against pooled over the seeds both finished: the mean paired difference in
    points and its 95% bootstrap interval over validation examples and seeds (``dhrd.stats``)."""
    from ..stats import example_statistics, paired_difference

    if "pooled" not in args.methods:
        return {}
    ids = [e.id for e in examples]

    def statistics_of(method: str, seed: int):
        directory = run_dir(args, task, method, seed)
        path = directory / predictions_file(args, task)
        if not (directory / "metrics.json").is_file() or not path.is_file():
            return None
        saved = json.loads(path.read_text())
        if saved["ids"] != ids:
            logger.warning("%s: scored on other examples than this table's; left out of the paired comparison", path)
            return None
        return example_statistics(task, examples, saved["probs"], _input_format(args))

    comparisons = {}
    for method in (m for m in PAIRED_METHODS if m in args.methods):
        pairs = [(statistics_of("pooled", seed), statistics_of(method, seed)) for seed in args.seeds]
        pairs = [(p, m) for p, m in pairs if p is not None and m is not None]
        if pairs:
            comparisons[method] = paired_difference(task, [p for p, _ in pairs], [m for _, m in pairs])
    return comparisons


def _average(args: ReproduceArguments, tasks: dict, paper: dict) -> dict:
    """The SuperGLUE average per method over the tasks every method has finished, and DHRD's gain (own-data
    tasks are not SuperGLUE's: they have their own columns, never averaged in)."""
    average: dict = {"methods": {}, "tasks": []}
    superglue = [t for t in args.tasks if not task_rules(t).own_data]
    for method in args.methods:
        done = [t for t in superglue if method in tasks[t]["methods"]]
        if done:
            average["methods"][method] = {
                "mean": round(statistics.fmean(tasks[t]["methods"][method]["score"]["mean"] for t in done), 2),
                "tasks": len(done),
            }
    both = [t for t in superglue if {"pooled", "dhrd"} <= set(tasks[t]["methods"])]
    average["tasks"] = both
    if both:
        p = statistics.fmean(tasks[t]["methods"]["pooled"]["score"]["mean"] for t in both)
        d = statistics.fmean(tasks[t]["methods"]["dhrd"]["score"]["mean"] for t in both)
        average["relative_gain_percent"] = round(100 * (d / p - 1), 2) if p else None
    average["paper_relative_gain_percent"] = {b: g["average"] for b, g in paper.items()}
    return average


def _decodes_cot(args: ReproduceArguments, task: str) -> bool:
    """Whether any CoT method decodes this task (zero-shot CoT has no per-answer prompt for MultiRC)."""
    rules = task_rules(task)
    return any(
        METHOD_RULES[m].decodes(rules.zero_shot_cot, first_seed=True) and not METHOD_RULES[m].skip_reason(rules)
        for m in args.methods
    )


def _caps(args: ReproduceArguments, task: str) -> dict:
    caps = {
        "max_train_examples": args.train_cap(task),
        "max_eval_examples": args.eval_cap(task),
        "cot_eval_examples": args.cot_cap(task) if _decodes_cot(args, task) else None,
        "epochs": args.task_epochs(task),
    }
    return {k: v for k, v in caps.items() if v is not None}
