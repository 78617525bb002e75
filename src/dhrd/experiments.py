"""``dhrd reproduce`` and ``dhrd demo``: the paper's experiment as one resumable command.

A *cell* is one unit of work whose result is a file: a training run (task, method, seed), a CoT decode of
its validation examples, a teacher cache, the throughput benchmark of a task. Every cell is skipped when its
file exists (written atomically, and checked to hold the same settings), and a training cell killed mid-way
resumes from its last checkpoint, so the command can be killed at any moment and run again: only the
unfinished cells run. After every cell the tables are rewritten from whatever has finished:
``results.md``, ``results.json``, ``results.csv`` and ``results.png`` in ``results_dir``.

Methods (the paper's Tables 1 and 3):

* ``pooled``: the pooled classifier, alpha = 0 (the baseline);
* ``dhrd``: the pooled classifier trained with the reasoning head, ``beta * L_cls + alpha * L_reason``;
* ``dhrd-shuffled``: the same with another example's rationale (the paper's Table 2 ``shuffle_reasoning``);
* ``cot``: reasoning/CoT fine-tuned (alpha = 1, beta = 0), scored by decoding a rationale and parsing its answer;
* ``cot-zero-shot``: the untouched backbone prompted to reason (no training, so one cell per task).

Scores are the tasks' official metrics on the (capped) validation split, as mean ± std over seeds.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import DHRDInputError
from .provenance import versions
from .runtime import plot_colour, save_figure_atomic, write_json_atomic, write_text_atomic
from .tables import read_text
from .tasks import TASKS, parse_task_names

logger = logging.getLogger(__name__)

METHODS = ("pooled", "dhrd", "dhrd-shuffled", "cot", "cot-zero-shot")
TRAINED_METHODS = ("pooled", "dhrd", "dhrd-shuffled", "cot")
# classifiers compared with the pooled baseline, paired by seed and example, with a confidence interval
PAIRED_METHODS = ("dhrd", "dhrd-shuffled")
COT_METHODS = ("cot", "cot-zero-shot")

# Table 1 of the paper (validation split): per backbone, the pooled baseline and DHRD, each task's metrics.
PAPER_TABLE1: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {
    "Llama-3.1-8B": {
        "pooled": {
            "boolq": (90.7,),
            "cb": (81.9, 90.0),
            "copa": (93.8,),
            "multirc": (88.9, 62.9),
            "rte": (91.4,),
            "wic": (74.8,),
            "wsc": (91.5,),
        },
        "dhrd": {
            "boolq": (91.1,),
            "cb": (89.0, 94.8),
            "copa": (95.4,),
            "multirc": (89.0, 63.7),
            "rte": (92.2,),
            "wic": (74.6,),
            "wsc": (91.1,),
        },
    },
    "Qwen-3-8B": {
        "pooled": {
            "boolq": (89.4,),
            "cb": (83.5, 93.2),
            "copa": (93.8,),
            "multirc": (88.2, 62.0),
            "rte": (91.9,),
            "wic": (75.1,),
            "wsc": (89.0,),
        },
        "dhrd": {
            "boolq": (90.5,),
            "cb": (90.8, 95.6),
            "copa": (93.2,),
            "multirc": (88.5, 62.5),
            "rte": (91.9,),
            "wic": (76.6,),
            "wsc": (89.7,),
        },
    },
    "Llama-3.2-3B": {
        "pooled": {
            "boolq": (89.0,),
            "cb": (78.6, 88.8),
            "copa": (72.2,),
            "multirc": (83.5, 49.8),
            "rte": (84.3,),
            "wic": (68.1,),
            "wsc": (77.4,),
        },
        "dhrd": {
            "boolq": (89.2,),
            "cb": (73.8, 87.2),
            "copa": (89.2,),
            "multirc": (85.9, 55.3),
            "rte": (87.7,),
            "wic": (73.0,),
            "wsc": (80.8,),
        },
    },
    "Qwen-3-4B": {  # its DHRD row is alpha = 0.5
        "pooled": {
            "boolq": (88.9,),
            "cb": (84.3, 91.6),
            "copa": (92.4,),
            "multirc": (87.7, 62.0),
            "rte": (90.4,),
            "wic": (71.4,),
            "wsc": (85.6,),
        },
        "dhrd": {
            "boolq": (89.5,),
            "cb": (84.4, 92.0),
            "copa": (92.8,),
            "multirc": (88.1, 62.4),
            "rte": (90.8,),
            "wic": (71.4,),
            "wsc": (87.4,),
        },
    },
}
PAPER_QPS_SPEEDUP = "96-142x (Table 5: pooled vs CoT decoding on the same backbone, 8x H100)"


def paper_gains() -> dict[str, dict[str, float]]:
    """Relative gain of DHRD over pooled in percent, per paper backbone and task (task score = the mean of
    its metrics, as in the paper's average), and for the average over the seven tasks."""
    gains: dict[str, dict[str, float]] = {}
    for backbone, rows in PAPER_TABLE1.items():
        pooled = {t: statistics.fmean(v) for t, v in rows["pooled"].items()}
        dhrd = {t: statistics.fmean(v) for t, v in rows["dhrd"].items()}
        gains[backbone] = {t: round(100 * (dhrd[t] / pooled[t] - 1), 2) for t in pooled}
        # from the averages as the paper prints them (two decimals), as its Rel.Δ column is
        avg_pooled, avg_dhrd = round(statistics.fmean(pooled.values()), 2), round(statistics.fmean(dhrd.values()), 2)
        gains[backbone]["average"] = round(100 * (avg_dhrd / avg_pooled - 1), 2)
    return gains


# ------------------------------------------------------------------------------------------- arguments
def _per_task(value, task: str):
    """A setting that is one value for every task, or ``{task: value, "default": value}``."""
    if isinstance(value, dict):
        return value.get(task, value.get("default"))
    return value


@dataclass
class ReproduceArguments:
    """What ``dhrd reproduce`` runs. Every field can come from a config file (TOML or YAML) and be
    overridden on the command line; ``train`` passes any other ``DHRDTrainingArguments`` field through."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    methods: list[str] = field(default_factory=lambda: ["pooled", "dhrd", "cot"])
    backbone: str | None = None  # [default: the shared SmolLM2 GGUF, else the hub's SmolLM2-135M-Instruct]
    data_dir: str | None = None
    output_dir: str = "runs/reproduce"  # the cells: training runs, CoT decodes, teacher caches, benchmarks
    results_dir: str | None = None  # results.{md,json,csv,png} [default: output_dir]
    # rationales: a folder of <Task>/train.jsonl (default: the shared reference set); tasks it lacks get
    # theirs from the teacher, into <output_dir>/rationales/
    rationales: str | None = None
    teacher: str | None = None  # a local model, or with teacher_base_url the served model's name
    teacher_base_url: str | None = None
    teacher_options: dict = field(default_factory=dict)  # more make_rationales arguments (concurrency, ...)
    # hyper-parameters (the paper's by default; see DHRDTrainingArguments)
    alpha: float = 1.0
    beta: float = 1.0
    epochs: float | dict = 3.0  # one number, or {task: epochs, "default": epochs}
    learning_rate: float = 2e-4
    batch_size: int = 8
    train: dict = field(default_factory=dict)
    # caps for CPU budgets: an int for every task or {task: int, "default": int}; reported in every table
    max_train_examples: int | dict | None = None
    max_eval_examples: int | dict | None = None
    subset_seed: int = 0  # every seed trains and is scored on the same capped subset: paired comparisons
    # CoT: decoding setting for the CoT scores and throughput, and how many validation examples it decodes
    cot_setting: str = "paper"  # paper (T=0.1, top_p 0.7, 500 tokens) or greedy (budget fitted to rationales)
    cot_eval_examples: int | dict | None = None  # [default: all evaluated examples]
    # throughput (QPS): the benchmark on the first seed's models, first N validation examples
    qps: bool = True
    qps_examples: int = 32
    qps_batch_size: int = 1
    qps_repeats: int = 3
    restart: bool = False  # discard finished cells and checkpoints (default: resume)
    tables_only: bool = False  # rewrite the tables from the finished cells; run nothing
    title: str | None = None

    def validate(self) -> None:
        self.tasks = parse_task_names(self.tasks)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise DHRDInputError(f"unknown method {', '.join(unknown) or '(none)'}: choose from {', '.join(METHODS)}")
        if not self.seeds:
            raise DHRDInputError("give at least one seed")
        if self.cot_setting not in ("paper", "greedy"):
            raise DHRDInputError(f"cot_setting must be paper or greedy, not {self.cot_setting!r}")
        from .training import DHRDTrainingArguments

        known = {f.name for f in fields(DHRDTrainingArguments)}
        bad = sorted(set(self.train) - known)
        if bad:
            raise DHRDInputError(f"train: unknown training argument {', '.join(bad)}")
        for name in ("max_train_examples", "max_eval_examples", "cot_eval_examples", "epochs"):
            value = getattr(self, name)
            if isinstance(value, dict):
                extra = sorted(set(value) - set(TASKS) - {"default"})
                if extra:
                    raise DHRDInputError(f"{name}: unknown task {', '.join(extra)}")

    def task_epochs(self, task: str) -> float:
        return _per_task(self.epochs, task)

    def train_cap(self, task: str) -> int | None:
        return _per_task(self.max_train_examples, task)

    def eval_cap(self, task: str) -> int | None:
        return _per_task(self.max_eval_examples, task)

    def cot_cap(self, task: str) -> int | None:
        return _per_task(self.cot_eval_examples, task) or self.eval_cap(task)


def parse_caps(text: str) -> int | dict:
    """``"64"``, ``"multirc:16"`` or ``"64,multirc:16,boolq:32"``: one cap, or caps per task."""
    caps: dict[str, int] = {}
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            task, sep, number = part.rpartition(":")
            caps[task.strip().lower() if sep else "default"] = int(number)
    except ValueError:
        raise DHRDInputError(f"cannot read {text!r} as caps: write 64, or 64,multirc:16") from None
    return caps["default"] if list(caps) == ["default"] else caps


def read_config(path: str | Path) -> dict:
    """A TOML or YAML file of ``ReproduceArguments`` fields (dashes or underscores); unknown keys are errors."""
    path = Path(path)
    if not path.is_file():
        raise DHRDInputError(f"{path}: config file not found")
    text = read_text(path)  # UTF-8, a byte-order mark accepted, a bad byte named
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib

            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise DHRDInputError(f"{path}: a config file is .toml, .yaml or .yml")
    except DHRDInputError:
        raise
    except Exception as error:  # tomllib and yaml each raise their own error types
        raise DHRDInputError(f"{path}: unreadable config ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DHRDInputError(f"{path}: expected a table of settings")
    data = {key.replace("-", "_"): value for key, value in data.items()}
    known = {f.name for f in fields(ReproduceArguments)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DHRDInputError(f"{path}: unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return data


def make_arguments(config: str | Path | None = None, **overrides) -> ReproduceArguments:
    """Defaults, then the config file, then the command line (``None`` means not given)."""
    settings = read_config(config) if config else {}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    for name in ("tasks", "methods"):
        if isinstance(settings.get(name), str):
            settings[name] = [p.strip() for p in settings[name].split(",") if p.strip()]
    if isinstance(settings.get("seeds"), str | int):
        settings["seeds"] = [int(s) for s in str(settings["seeds"]).split(",") if s.strip()]
    for name in ("max_train_examples", "max_eval_examples", "cot_eval_examples"):
        if isinstance(settings.get(name), str):
            settings[name] = parse_caps(settings[name])
    args = ReproduceArguments(**settings)
    args.validate()
    return args


# ------------------------------------------------------------------------------------------------ cells
def run_dir(args: ReproduceArguments, task: str, method: str, seed: int) -> Path:
    return Path(args.output_dir) / task / f"{method}-s{seed}"


def training_arguments(args: ReproduceArguments, task: str, method: str, seed: int, rationales: str | None):
    from .training import DHRDTrainingArguments

    settings = dict(
        output_dir=str(run_dir(args, task, method, seed)),
        task=task,
        data_dir=args.data_dir,
        backbone=args.backbone,
        method="pooled" if method == "pooled" else "dhrd",
        alpha=None if method == "pooled" else (1.0 if method == "cot" else args.alpha),
        beta=0.0 if method == "cot" else args.beta,
        rationales=rationales,
        rationale_mode="shuffle_reasoning" if method == "dhrd-shuffled" else "consistent",
        keep_reasoning_head=method == "cot",
        num_train_epochs=float(args.task_epochs(task)),
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        seed=seed,
        subset_seed=args.subset_seed,
        max_train_examples=args.train_cap(task),
        max_eval_examples=args.eval_cap(task),
        resume=not args.restart,
    )
    settings.update(args.train)
    return DHRDTrainingArguments(**settings)


def _same_run(train_args, output: Path) -> bool:
    """A finished run in ``output`` is reused only when it was made with these settings."""
    from .training import changed_settings

    saved = output / "train_args.json"
    if not saved.is_file():
        return False
    changed = changed_settings(json.loads(saved.read_text()), train_args, ("max_eval_examples",))
    if changed:
        raise DHRDInputError(
            f"{output}: holds a finished run with other settings ({', '.join(changed)}); use another "
            "--output-dir, or --restart to run it again"
        )
    return True


def train_cell(train_args) -> dict:
    """Train (or resume) one run; a finished run with the same settings is read back, not trained again."""
    from .training import train

    output = Path(train_args.output_dir)
    metrics_file = output / "metrics.json"
    if train_args.resume and metrics_file.is_file() and _same_run(train_args, output):
        return json.loads(metrics_file.read_text())
    if metrics_file.is_file():
        metrics_file.unlink()  # --restart: the old result must not outlive its run
    return train(train_args).metrics


def _cot_examples(args: ReproduceArguments, task: str, classifier=None):
    """The validation examples CoT is scored on: the first ``cot_cap`` of the (capped) evaluation subset."""
    from .evaluation import examples_for_model, first_examples
    from .tasks import load_task_split, sample_examples

    if classifier is not None:
        examples, _ = examples_for_model(classifier, task, "validation", args.data_dir)
    else:
        examples = load_task_split(task, "validation", "yesno", args.data_dir)
    examples = sample_examples(examples, args.eval_cap(task), args.subset_seed)
    return first_examples(examples, args.cot_cap(task))


def _decode_settings(args: ReproduceArguments, task: str, tokenizer, rationales: str | None):
    from .cot import PAPER_SETTINGS, fitted_max_new_tokens, greedy_settings
    from .rationales import rationale_file, read_rationales

    if args.cot_setting == "paper":
        return PAPER_SETTINGS
    path = rationale_file(rationales, task)
    if path is None:
        raise DHRDInputError(f"cot_setting greedy fits its budget to {task}'s rationales, and there are none")
    return greedy_settings(fitted_max_new_tokens(read_rationales(path).values(), tokenizer))


def cot_cell(args: ReproduceArguments, task: str, method: str, seed: int, rationales: str | None) -> dict:
    """Decode CoT on the evaluation examples and score the parsed answers with the task's official metric.
    ``cot``: the fine-tuned model of this seed continues ``x + "Reasoning:"``; ``cot-zero-shot``: the backbone,
    prompted to reason (greedy decoding does not depend on the seed, so it is one cell per task)."""
    from .cot import (
        TransformersEngine,
        example_predictions,
        finetuned_gold,
        finetuned_queries,
        score,
        zero_shot_queries,
    )

    target = run_dir(args, task, method, seed) / "cot-eval.json"
    if target.is_file() and not args.restart:
        return json.loads(target.read_text())
    start = time.perf_counter()
    if method == "cot":
        from .explain import reasoning_lm

        lm, classifier, tokenizer = reasoning_lm(run_dir(args, task, "cot", seed))
        labels = [classifier.config.id2label[i] for i in range(classifier.config.num_labels)]
        examples = _cot_examples(args, task, classifier)
        queries, gold = finetuned_queries(examples, tokenizer, labels), finetuned_gold(examples, labels)
    else:
        from .modeling import default_backbone, load_causal_lm

        lm, tokenizer = load_causal_lm(args.backbone or default_backbone())
        groups = list(dict.fromkeys(e.group for e in _cot_examples(args, task)))
        queries, gold = zero_shot_queries(task, tokenizer, args.data_dir, groups=groups)
    settings = _decode_settings(args, task, tokenizer, rationales)
    decoded = TransformersEngine(lm, tokenizer).run(queries, settings, batch_size=8, seed=seed)
    predictions = example_predictions(task, queries, decoded)
    metrics = score(task, predictions, gold)
    result = {
        "score": metrics["score"],
        "tasks": {task: metrics},
        "setting": settings.describe(),
        "unparsed_rows": predictions.unparsed_rows,
        "ambiguous_examples": predictions.ambiguous_examples,
        "eval_examples": len(gold),
        "seconds": round(time.perf_counter() - start, 1),
        "sample_output": predictions.texts[0][:400] if predictions.texts else None,
    }
    write_json_atomic(target, result)
    return result


def qps_cell(args: ReproduceArguments, task: str, rationales: str | None) -> dict:
    """Throughput of every method, side by side in one benchmark run, on the first seed's models."""
    from .benchmark import BenchmarkArguments, benchmark

    target = Path(args.output_dir) / task / "qps.json"
    if target.is_file() and not args.restart:
        return json.loads(target.read_text())
    seed = args.seeds[0]
    trained = {m: str(run_dir(args, task, m, seed)) for m in TRAINED_METHODS if m in args.methods}
    zero_shot = "cot-zero-shot" in args.methods and TASKS[task].zero_shot_cot
    result = benchmark(
        BenchmarkArguments(
            task=task,
            data_dir=args.data_dir,
            max_examples=args.qps_examples,
            pooled=trained.get("pooled"),
            dhrd=trained.get("dhrd"),
            cot_finetuned=trained.get("cot"),
            backbone=args.backbone,
            zero_shot=zero_shot,
            batch_sizes=(args.qps_batch_size,),
            repeats=args.qps_repeats,
            cot_settings=(args.cot_setting,),
            rationales=rationales,
            engines=("transformers",),
            fast_path=False,
            output=str(target.with_name("benchmark")),
        )
    )
    names = {"pooled": "pooled", "dhrd": "dhrd", "cot-finetuned": "cot", "cot-zero-shot": "cot-zero-shot"}
    qps = {
        names[r["system"]]: {k: r[k] for k in ("examples_per_s", "latency_p50_ms", "examples", "score")}
        for r in result.rows
    }
    data = {
        "qps": qps,
        "batch_size": args.qps_batch_size,
        "examples": result.inputs.get("examples"),
        "setting": result.cot_settings,
        "machine": result.machine,
        "seconds": result.seconds,
    }
    write_json_atomic(target, data)
    return data


def existing_rationales(args: ReproduceArguments, task: str) -> str | None:
    """The rationale folder a task's cells were trained with, without asking any teacher: the given folder or
    the reference set where it has the task, else the teacher's cache where one was made."""
    from .rationales import default_rationale_dir

    base = Path(args.rationales) if args.rationales else default_rationale_dir()
    if base is not None and (base / TASKS[task].folder / "train.jsonl").is_file():
        return str(base)
    if args.teacher:
        from .teacher import teacher_slug

        cache = Path(args.output_dir) / "rationales" / teacher_slug(args.teacher)
        if (cache / TASKS[task].folder / "train.jsonl").is_file():
            return str(cache)
    return None


def rationale_source(args: ReproduceArguments, task: str, progress: bool = True) -> tuple[str | None, dict]:
    """Where ``task``'s rationales come from: the given folder or the shared reference set when it has the
    task, else the teacher's cache (made now, resumably, for the capped training subset only)."""
    from .rationales import default_rationale_dir

    base = Path(args.rationales) if args.rationales else default_rationale_dir()
    folder = TASKS[task].folder
    if base is not None and (base / folder / "train.jsonl").is_file():
        return str(base), {"source": str(base / folder / "train.jsonl")}
    if not args.teacher:
        raise DHRDInputError(
            f"no rationales for {task} in {base or 'the shared reference set'}: give a teacher "
            "(--teacher, with --teacher-base-url for a server) or --rationales with a <Task>/train.jsonl"
        )
    from .teacher import make_rationales, teacher_slug

    output = Path(args.output_dir) / "rationales" / teacher_slug(args.teacher)
    options = dict(args.teacher_options)
    path, summary = make_rationales(
        task=task,
        data_dir=args.data_dir,
        teacher=args.teacher,
        base_url=args.teacher_base_url,
        output=output,
        max_examples=args.train_cap(task),
        subset_seed=args.subset_seed,
        progress=progress,
        **options,
    )
    return str(output), {
        "source": str(path),
        "teacher": summary["teacher"],
        "rationales": summary["rationales_in_cache"],
        "examples": summary["examples"],
    }


# ------------------------------------------------------------------------------------------------ plan
@dataclass
class Cell:
    kind: str  # rationales | train | cot | qps
    task: str
    method: str | None = None
    seed: int | None = None

    @property
    def name(self) -> str:
        parts = [self.kind, self.task, self.method, None if self.seed is None else f"s{self.seed}"]
        return " ".join(p for p in parts if p)


def plan(args: ReproduceArguments) -> list[Cell]:
    """Seed by seed, so that a run stopped early still has a full-width table of its first seeds; the
    benchmark of a task follows its first seed's models."""
    cells: list[Cell] = []
    needs_rationales = any(m in args.methods for m in ("dhrd", "dhrd-shuffled", "cot"))
    if needs_rationales:
        cells += [Cell("rationales", task) for task in args.tasks]
    for k, seed in enumerate(args.seeds):
        for task in args.tasks:
            for method in args.methods:
                if method in TRAINED_METHODS:
                    cells.append(Cell("train", task, method, seed))
                if method == "cot" or (method == "cot-zero-shot" and k == 0 and TASKS[task].zero_shot_cot):
                    cells.append(Cell("cot", task, method, seed))
            if k == 0 and args.qps:
                cells.append(Cell("qps", task))
    return cells


def cell_finished(args: ReproduceArguments, cell: Cell) -> bool:
    """Whether a cell's result file exists (a teacher cache counts as finished: reading it runs nothing
    unless the teacher must write more, which ``--tables-only`` leaves to a real run)."""
    if cell.kind == "rationales":
        return True  # only looked up (existing_rationales), never made, under --tables-only
    if cell.kind == "train":
        return (run_dir(args, cell.task, cell.method, cell.seed) / "metrics.json").is_file()
    if cell.kind == "cot":
        return (run_dir(args, cell.task, cell.method, cell.seed) / "cot-eval.json").is_file()
    return (Path(args.output_dir) / cell.task / "qps.json").is_file()


# ------------------------------------------------------------------------------------------------- run
@dataclass
class ReproduceResult:
    arguments: dict
    cells: dict = field(default_factory=dict)  # name -> {"kind", "task", "method", "seed", "result"/"error"}
    rationales: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    command: str | None = None
    seconds: float = 0.0
    versions: dict = field(default_factory=dict)
    finished: bool = False


def reproduce(args: ReproduceArguments, progress: bool = True, on_cell: Callable | None = None) -> ReproduceResult:
    """Run every unfinished cell of the plan and write the tables after each one."""
    args.validate()
    began = time.perf_counter()
    result = ReproduceResult(asdict(args), versions=versions())
    program = Path(sys.argv[0])
    if program.name == "dhrd" or (program.name == "__main__.py" and program.parent.name == "dhrd"):
        # the command that made the cells: a --tables-only pass only rewrites their tables
        result.command = shlex.join(["dhrd", *(a for a in sys.argv[1:] if a != "--tables-only")])
    results_dir = Path(args.results_dir or args.output_dir)
    earlier = results_dir / "results.json"
    before = json.loads(earlier.read_text()) if earlier.is_file() and not args.restart else {}
    spent = before.get("seconds", 0.0)
    timed = {name: cell.get("cell_seconds") for name, cell in before.get("cells", {}).items()}
    cells = plan(args)
    sources: dict[str, str | None] = {task: None for task in args.tasks}
    from tqdm.auto import tqdm

    bar = tqdm(cells, desc="reproduce", unit="cell", disable=not progress)
    for cell in bar:
        bar.set_postfix_str(cell.name, refresh=True)
        start = time.perf_counter()
        done_before = cell_finished(args, cell)
        if args.tables_only and not done_before:
            continue
        if cell.kind == "rationales" and args.tables_only:
            sources[cell.task] = existing_rationales(args, cell.task)
            continue
        if cell.kind == "rationales":
            sources[cell.task], result.rationales[cell.task] = rationale_source(args, cell.task, progress)
            continue
        if cell.kind == "train":
            rationales = sources[cell.task] if cell.method != "pooled" else None
            output = training_arguments(args, cell.task, cell.method, cell.seed, rationales)
            value = train_cell(output)
        elif cell.kind == "cot":
            value = cot_cell(args, cell.task, cell.method, cell.seed, sources[cell.task])
        else:
            value = qps_cell(args, cell.task, sources[cell.task])
        record = {"kind": cell.kind, "task": cell.task, "method": cell.method, "seed": cell.seed, "result": value}
        # a cell finished by an earlier run keeps the time it took then, not the moment it takes to re-read it
        seconds = timed.get(cell.name) if done_before else None
        record["cell_seconds"] = seconds if seconds is not None else round(time.perf_counter() - start, 1)
        result.cells[cell.name] = record
        result.seconds = round(spent + time.perf_counter() - began, 1)
        result.summary = summarise(args, result)
        write_results(result, results_dir)
        if on_cell is not None:
            on_cell(cell, record)
    bar.close()
    result.finished = all(cell_finished(args, cell) for cell in cells)  # --tables-only skips unfinished ones
    result.seconds = round(spent + time.perf_counter() - began, 1)
    result.summary = summarise(args, result)
    write_results(result, results_dir)
    return result


# -------------------------------------------------------------------------------------------- summary
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
        elif record["kind"] == "train" and method != "cot" or record["kind"] == "cot":
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
                    for k in TASKS[task].metrics
                    if all(k in r["tasks"][task] for r in runs)
                },
                "eval_examples": runs[0]["tasks"][task].get("examples"),
                "train_rows": runs[0].get("train_rows"),
                "rows_without_rationale": runs[0].get("rows_without_rationale"),
            }
            if method in COT_METHODS:  # scored as wrong, and worth seeing beside a low CoT score
                for key in ("unparsed_rows", "ambiguous_examples"):
                    methods[method][key] = sum(r.get(key) or 0 for r in runs)
        entry = {"methods": methods, "qps": qps.get(task), "caps": _caps(args, task)}
        if methods:
            examples = evaluation_examples(args, task)
            entry["floor"] = task_floor(args, task, examples)
            entry["paired"] = paired_comparisons(args, task, examples)
        if "pooled" in methods and "dhrd" in methods:
            p, d = methods["pooled"]["score"]["mean"], methods["dhrd"]["score"]["mean"]
            entry["relative_gain_percent"] = round(100 * (d / p - 1), 2) if p else None
        entry["paper_relative_gain_percent"] = {b: g[task] for b, g in paper.items()}
        if task == "boolq":
            from .tasks import BOOLQ_CARVE_NOTE, boolq_carved

            if boolq_carved(args.data_dir):
                entry["not_comparable"] = BOOLQ_CARVE_NOTE
        tasks[task] = entry
    return {"tasks": tasks, "average": _average(args, tasks, paper)}


def _input_format(args: ReproduceArguments) -> str:
    return args.train.get("input_format", "yesno")


def evaluation_examples(args: ReproduceArguments, task: str) -> list:
    """The validation examples every classifier of ``task`` is scored on (the same capped, seeded sample)."""
    from .tasks import load_task_split, sample_examples

    rows = load_task_split(task, "validation", _input_format(args), args.data_dir)
    return sample_examples(rows, args.eval_cap(task), args.subset_seed)


_FLOORS: dict[tuple, dict] = {}


def task_floor(args: ReproduceArguments, task: str, examples: list) -> dict:
    """The majority floor (best constant predictor) and chance score on the evaluated examples."""
    from .tasks import floors

    key = (task, tuple(e.id for e in examples), _input_format(args))
    if key not in _FLOORS:
        labels = len(TASKS[task].label_names(_input_format(args)))
        _FLOORS[key] = floors(examples, _input_format(args), labels)[task]
    return _FLOORS[key]


def paired_comparisons(args: ReproduceArguments, task: str, examples: list) -> dict:
    """Each of ``PAIRED_METHODS`` against pooled over the seeds both finished: the mean paired difference in
    points and its 95% bootstrap interval over validation examples and seeds (``dhrd.stats``)."""
    from .stats import example_statistics, paired_difference
    from .training import PREDICTIONS_FILE

    if "pooled" not in args.methods:
        return {}
    ids = [e.id for e in examples]

    def statistics_of(method: str, seed: int):
        directory = run_dir(args, task, method, seed)
        path = directory / PREDICTIONS_FILE
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
    """The SuperGLUE average per method over the tasks every method has finished, and DHRD's gain."""
    average: dict = {"methods": {}, "tasks": []}
    for method in args.methods:
        done = [t for t in args.tasks if method in tasks[t]["methods"]]
        if done:
            average["methods"][method] = {
                "mean": round(statistics.fmean(tasks[t]["methods"][method]["score"]["mean"] for t in done), 2),
                "tasks": len(done),
            }
    both = [t for t in args.tasks if {"pooled", "dhrd"} <= set(tasks[t]["methods"])]
    average["tasks"] = both
    if both:
        p = statistics.fmean(tasks[t]["methods"]["pooled"]["score"]["mean"] for t in both)
        d = statistics.fmean(tasks[t]["methods"]["dhrd"]["score"]["mean"] for t in both)
        average["relative_gain_percent"] = round(100 * (d / p - 1), 2) if p else None
    average["paper_relative_gain_percent"] = {b: g["average"] for b, g in paper.items()}
    return average


def _decodes_cot(args: ReproduceArguments, task: str) -> bool:
    """Whether any CoT method decodes this task (zero-shot CoT has no per-answer prompt for MultiRC)."""
    return "cot" in args.methods or ("cot-zero-shot" in args.methods and TASKS[task].zero_shot_cot)


def _caps(args: ReproduceArguments, task: str) -> dict:
    caps = {
        "max_train_examples": args.train_cap(task),
        "max_eval_examples": args.eval_cap(task),
        "cot_eval_examples": args.cot_cap(task) if _decodes_cot(args, task) else None,
        "epochs": args.task_epochs(task),
    }
    return {k: v for k, v in caps.items() if v is not None}


# --------------------------------------------------------------------------------------------- output
def _epochs_text(epochs) -> str:
    if isinstance(epochs, dict):
        return ", ".join(f"{k}: {v:g}" for k, v in epochs.items())
    return f"{epochs:g}"


def _pm(stat: dict | None) -> str:
    if not stat:
        return "–"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}" if stat["std"] is not None else f"{stat['mean']:.1f}"


METHOD_NAMES = {
    "pooled": "Pooled baseline",
    "dhrd": "DHRD",
    "dhrd-shuffled": "DHRD, shuffled rationales",
    "cot": "CoT fine-tuned (α=1, β=0)",
    "cot-zero-shot": "CoT zero-shot",
}


def markdown(result: ReproduceResult) -> str:
    args, summary = result.arguments, result.summary
    tasks = summary["tasks"]
    names = list(tasks)
    header = "| method | " + " | ".join(TASKS[t].folder for t in names) + " | Avg | Rel.Δ |"
    with_cot = any(m in COT_METHODS for m in args["methods"])
    decoding = f"; CoT decoding: {_decoding(result)}" if with_cot else ""
    lines = [
        f"# {args.get('title') or 'dhrd reproduce'}: pooled vs DHRD{' vs CoT' if with_cot else ''} on SuperGLUE",
        "",
        f"Backbone: {args['backbone'] or 'default (SmolLM2-135M-Instruct)'}; seeds {args['seeds']}; "
        f"{_epochs_text(args['epochs'])} epoch(s), lr {args['learning_rate']:g}, batch {args['batch_size']}, "
        f"alpha {args['alpha']:g}, beta {args['beta']:g}{decoding}."
        + (f" Other training settings: {args['train']}." if args["train"] else ""),
        "Scores are each task's official metric in percent on the validation split (CB: mean of F1 and "
        "accuracy; MultiRC: mean of F1a and EM), mean ± std over seeds; Avg is the mean over the tasks a method "
        "finished; Rel.Δ is the relative change of Avg against the pooled baseline. '(on N, ±E)': scored on "
        "fewer examples than the classifiers, E the 95% sampling error of N examples. The majority floor is the "
        "score of the best constant predictor on the same examples: a model below it has learnt nothing.",
        "",
        *_headline_lines(result),
        header,
        "|---|" + "---|" * (len(names) + 2),
    ]
    average = summary["average"]
    for method in args["methods"]:
        cells = [_score_cell(tasks[t]["methods"], method, len(args["seeds"])) for t in names]
        avg = average["methods"].get(method)
        rel = ""
        if method == "dhrd" and average.get("relative_gain_percent") is not None:
            rel = f"{average['relative_gain_percent']:+.2f}%"
        avg_text = "–"
        if avg:
            avg_text = f"{avg['mean']:.2f}" + (f" ({avg['tasks']} tasks)" if avg["tasks"] < len(names) else "")
        lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells) + f" | {avg_text} | {rel} |")
    for label, key in (("Majority floor (best constant)", "score"), ("Chance (uniform guess)", "chance")):
        values = [tasks[t].get("floor", {}).get(key) for t in names]
        if any(v is not None for v in values):
            shown = ["–" if v is None else f"{v:.1f}" for v in values]
            known = [v for v in values if v is not None]
            lines.append(f"| *{label}* | " + " | ".join(shown) + f" | {statistics.fmean(known):.2f} | |")
    lines += _paired_lines(result)
    lines += [
        "",
        "## DHRD over pooled: relative gain, beside the paper's (Table 1)",
        "",
        "| task | pooled | DHRD | ours | " + " | ".join(f"paper {b}" for b in PAPER_TABLE1) + " |",
        "|---|---|---|---|" + "---|" * len(PAPER_TABLE1),
    ]
    for task in names:
        entry, methods = tasks[task], tasks[task]["methods"]
        ours = entry.get("relative_gain_percent")
        paper = " | ".join(f"{entry['paper_relative_gain_percent'][b]:+.2f}%" for b in PAPER_TABLE1)
        lines.append(
            f"| {TASKS[task].folder} | {_pm(methods.get('pooled', {}).get('score'))} "
            f"| {_pm(methods.get('dhrd', {}).get('score'))} | {'–' if ours is None else f'{ours:+.2f}%'} | {paper} |"
        )
    ours = average.get("relative_gain_percent")
    paper = " | ".join(f"{average['paper_relative_gain_percent'][b]:+.2f}%" for b in PAPER_TABLE1)
    lines.append(f"| Avg ({len(average['tasks'])} tasks) | | | {'–' if ours is None else f'{ours:+.2f}%'} | {paper} |")
    lines += _qps_lines(result)
    lines += _caps_lines(result)
    lines += [
        "",
        f"Command: `{result.command}`" if result.command else "Run from the Python API (arguments in results.json).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in result.versions.items()) + ".",
        f"Wall time: {result.seconds:.0f} s{'' if result.finished else ' so far (the run has not finished)'}.",
        "",
    ]
    return "\n".join(lines)


def _headline_lines(result: ReproduceResult) -> list[str]:
    """Per task, in words: did the baseline learn (against the majority floor), did DHRD beat it (the paired
    interval), and how much faster is the classifier than CoT decoding."""
    lines = []
    for task, entry in result.summary["tasks"].items():
        methods, floor = entry["methods"], entry.get("floor")
        pooled = methods.get("pooled", {}).get("score")
        if not pooled or not floor:
            continue
        margin = pooled["mean"] - floor["score"]
        learnt = "learnt" if margin >= 5 else ("barely learnt" if margin > 0 else "did not learn")
        parts = [f"pooled {pooled['mean']:.1f} vs majority floor {floor['score']:.1f} ({margin:+.1f} points: {learnt})"]
        paired = (entry.get("paired") or {}).get("dhrd")
        if paired:
            parts.append(
                f"DHRD - pooled {paired['difference']:+.1f} points, 95% CI [{paired['ci'][0]:+.1f}, "
                f"{paired['ci'][1]:+.1f}] over {paired['seeds']} seed(s): {paired['verdict']}"
            )
        qps = entry.get("qps") or {}
        for cot in (m for m in COT_METHODS if m in qps and "dhrd" in qps):
            ratio = qps["dhrd"]["examples_per_s"] / qps[cot]["examples_per_s"]
            parts.append(f"the DHRD classifier serves {ratio:.0f}x the examples/s of {METHOD_NAMES[cot]}")
        lines.append(f"- **{TASKS[task].folder}**: " + "; ".join(parts) + ".")
    return [*lines, ""] if lines else []


def _sampling_error(score: float, examples: int) -> float:
    """Half-width of the 95% Wilson interval of an accuracy on ``examples`` examples, in points (unlike the
    normal approximation it is not 0 for a score of 0 or 100)."""
    p, n, z = min(max(score / 100, 0.0), 1.0), max(examples, 1), 1.96
    return 100 * z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)


def _paired_lines(result: ReproduceResult) -> list[str]:
    tasks = result.summary["tasks"]
    rows = [(t, m, c) for t, e in tasks.items() for m, c in (e.get("paired") or {}).items()]
    if not rows:
        return []
    lines = [
        "",
        "## Paired with pooled: the difference in points, with a 95% confidence interval",
        "",
        "Same seeds, same training and validation examples. The interval is a bootstrap over validation examples "
        "and seeds (2,000 resamples) of each task's official score; a difference whose interval holds 0 is no "
        "measurable difference.",
        "",
        "| task | method | seeds | examples | floor | pooled | method | difference | 95% CI | per seed | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, method, c in rows:
        methods = tasks[task]["methods"]
        floor = tasks[task].get("floor", {}).get("score")
        lines.append(
            f"| {TASKS[task].folder} | {METHOD_NAMES[method]} | {c['seeds']} | {c['examples']} | "
            f"{'–' if floor is None else f'{floor:.1f}'} | {_pm(methods.get('pooled', {}).get('score'))} | "
            f"{_pm(methods.get(method, {}).get('score'))} | {c['difference']:+.2f} | "
            f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] | {', '.join(f'{d:+.1f}' for d in c['per_seed'])} | "
            f"{c['verdict']} |"
        )
    return lines


def _score_cell(methods: dict, method: str, seeds: int) -> str:
    """mean ± std; the number of examples where a method was scored on fewer than the others (CoT), and the
    number of seeds where a run stopped before every seed finished (zero-shot CoT has one cell by design)."""
    entry = methods.get(method)
    if not entry:
        return "–"
    most = max(m["eval_examples"] or 0 for m in methods.values())
    fewer = entry["eval_examples"] and entry["eval_examples"] < most
    margin = f", ±{_sampling_error(entry['score']['mean'], entry['eval_examples']):.0f}" if fewer else ""
    text = _pm(entry["score"]) + (f" (on {entry['eval_examples']}{margin})" if fewer else "")
    n = entry["score"]["n"]
    return text + (f" [{n}/{seeds} seeds]" if method != "cot-zero-shot" and n < seeds else "")


def _decoding(result: ReproduceResult) -> str:
    """The CoT decoding settings the cells used (greedy budgets are fitted per task)."""
    used = {
        f"{record['task']}: {record['result']['setting']}"
        for record in result.cells.values()
        if record["kind"] == "cot"
    }
    return "; ".join(sorted(used)) or result.arguments["cot_setting"]


def _qps_lines(result: ReproduceResult) -> list[str]:
    tasks = result.summary["tasks"]
    measured = {t: e["qps"] for t, e in tasks.items() if e.get("qps")}
    if not measured:
        return []
    methods = [m for m in result.arguments["methods"] if any(m in q for q in measured.values())]
    lines = [
        "",
        f"## Throughput: examples/s at batch {result.arguments['qps_batch_size']}, one benchmark run per task "
        f"(first seed's models, first {result.arguments['qps_examples']} validation examples)",
        "",
        "| task | "
        + " | ".join(METHOD_NAMES[m] for m in methods)
        + "".join(f" | DHRD / {METHOD_NAMES[m]}" for m in COT_METHODS if m in methods)
        + " |",
        "|---|" + "---|" * (len(methods) + len([m for m in COT_METHODS if m in methods])),
    ]
    for task, q in measured.items():
        cells = [f"{q[m]['examples_per_s']:.3g}" if m in q else "–" for m in methods]
        for m in (m for m in COT_METHODS if m in methods):
            ratio = "dhrd" in q and m in q and q["dhrd"]["examples_per_s"] / q[m]["examples_per_s"]
            cells.append(f"{ratio:.1f}x" if ratio else "–")
        lines.append(f"| {TASKS[task].folder} | " + " | ".join(cells) + " |")
    lines.append(f"\nThe paper's speed-up of the classifier over CoT decoding: {PAPER_QPS_SPEEDUP}.")
    return lines


def _caps_lines(result: ReproduceResult) -> list[str]:
    lines = ["", "## What each cell saw (caps are never hidden)", ""]
    for task, entry in result.summary["tasks"].items():
        caps = entry["caps"]
        unit = " (questions)" if TASKS[task].per_answer else ""
        parts = [f"{k.replace('_', ' ')} {v}{unit}" for k, v in caps.items() if k != "epochs"] or ["no caps"]
        methods = entry["methods"]
        seen = ", ".join(f"{m}: {v['eval_examples']} eval examples" for m, v in methods.items() if v["eval_examples"])
        line = f"- **{TASKS[task].folder}**: {'; '.join(parts)}" + (f" ({seen})" if seen else "")
        source = result.rationales.get(task)
        if source:
            line += f"; rationales: {source.get('teacher', 'reference set')} ({source['source']})"
        for method in (m for m in COT_METHODS if m in methods):
            counts = methods[method]
            line += (
                f"; {method} outputs (all seeds): {counts['unparsed_rows']} unparseable rows, "
                f"{counts['ambiguous_examples']} examples answered Yes for no or several candidates (scored wrong)"
            )
        without = (methods.get("dhrd") or {}).get("rows_without_rationale")
        if without:
            line += f"; {without} DHRD training rows had no rationale (classification loss only)"
        if entry.get("not_comparable"):
            line += f". **Not comparable to the paper**: {entry['not_comparable']}"
        lines.append(line)
    return lines


def csv_rows(result: ReproduceResult) -> list[dict]:
    rows = []
    for task, entry in result.summary["tasks"].items():
        for method, values in entry["methods"].items():
            qps = (entry.get("qps") or {}).get(method, {})
            score = values["score"]
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "score_mean": score["mean"],
                    "score_std": score["std"],
                    "seeds": score["n"],
                    "scores": " ".join(str(v) for v in score["values"]),
                    **{f"metric_{k}": v for k, v in values["metrics"].items()},
                    "relative_gain_percent": entry.get("relative_gain_percent") if method == "dhrd" else None,
                    "majority_floor": (entry.get("floor") or {}).get("score"),
                    "chance": (entry.get("floor") or {}).get("chance"),
                    "difference_vs_pooled": (entry.get("paired") or {}).get(method, {}).get("difference"),
                    "ci95_low": ((entry.get("paired") or {}).get(method, {}).get("ci") or [None])[0],
                    "ci95_high": ((entry.get("paired") or {}).get(method, {}).get("ci") or [None, None])[1],
                    "qps": qps.get("examples_per_s"),
                    "eval_examples": values["eval_examples"],
                    "max_train_examples": entry["caps"].get("max_train_examples"),
                    "max_eval_examples": entry["caps"].get("max_eval_examples"),
                    "not_comparable": entry.get("not_comparable"),
                }
            )
    return rows


def write_results(result: ReproduceResult, directory: Path) -> None:
    """results.json, .md, .csv and .png, each written to a temporary file and renamed into place."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / "results.json", asdict(result))
    write_text_atomic(directory / "results.md", markdown(result))
    rows = csv_rows(result)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(directory / "results.csv", buffer.getvalue())
    plot(result, directory / "results.png")


def plot(result: ReproduceResult, path: Path) -> Path | None:
    """Left: each task's score per method (error bars: std over seeds). Right: examples/s per method (log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = result.summary["tasks"]
    names = [t for t, e in tasks.items() if e["methods"]]
    if not names:
        return None
    methods = [m for m in result.arguments["methods"] if any(m in tasks[t]["methods"] for t in names)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(methods)
    x = np.arange(len(names))
    for k, method in enumerate(methods):
        stats = [tasks[t]["methods"].get(method, {}).get("score") for t in names]
        means = [s["mean"] if s else 0 for s in stats]
        errors = [s["std"] or 0 if s else 0 for s in stats]
        left.bar(x + k * width, means, width, yerr=errors, label=METHOD_NAMES[method], color=plot_colour(method))
    for i, task in enumerate(names):
        floor = tasks[task].get("floor")
        if floor:
            span = (x[i] - width / 2, x[i] + width * (len(methods) - 0.5))
            left.hlines(
                floor["score"], *span, colors="k", linestyles="--", lw=1.2, label="majority floor" if i == 0 else None
            )
            left.hlines(
                floor["chance"], *span, colors="grey", linestyles=":", lw=1.2, label="chance" if i == 0 else None
            )
    left.set_xticks(x + width * (len(methods) - 1) / 2, [TASKS[t].folder for t in names])
    left.set_ylabel("validation score (%)")
    left.set_ylim(0, 100)
    left.legend(fontsize=8)
    left.set_title("task score, mean ± std over seeds")
    measured = [t for t in names if tasks[t].get("qps")]
    for k, method in enumerate(methods):
        speeds = [tasks[t]["qps"].get(method, {}).get("examples_per_s", 0) for t in measured]
        right.bar(np.arange(len(measured)) + k * width, speeds, width, color=plot_colour(method))
    right.set_xticks(np.arange(len(measured)) + width * (len(methods) - 1) / 2, [TASKS[t].folder for t in measured])
    right.set_yscale("log")
    right.set_ylabel(f"examples/s (batch {result.arguments['qps_batch_size']}, log)")
    right.set_title("throughput")
    fig.suptitle(f"{result.arguments.get('title') or 'dhrd reproduce'} - {result.versions.get('device', '')}")
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=110)


# ------------------------------------------------------------------------------------------------ demo
# The demo's task and budget, from results/learning-budget-smollm2-cpu.md: of the budgets that fit 10 minutes on
# 2 cores with both methods, the one where the pooled SmolLM2-135M student came furthest above its task's
# majority floor (CB in its native format: one 3-way row per example, a fifth of the yes/no format's tokens;
# the whole training split, one epoch, LoRA at lr 1e-3). The table says whether it beat the floor this time.
DEMO = dict(
    tasks=["cb"],
    seeds=[1],
    methods=["pooled", "dhrd", "cot-zero-shot"],
    output_dir="runs/demo",
    epochs=1.0,
    learning_rate=1e-3,
    cot_eval_examples=24,
    cot_setting="greedy",
    qps_examples=8,
    qps_repeats=2,
    train={"input_format": "native", "best_epoch": False},
    title="dhrd demo",
)


def demo_arguments(**overrides) -> ReproduceArguments:
    """The README's main job: pooled vs DHRD on a small task with the shared SmolLM2 student and reference
    rationales, both evaluated on the whole validation split and benchmarked against zero-shot CoT decoding,
    in at most 10 minutes on 2 CPU cores (the CoT fine-tuned model, a third training run, is left to
    ``dhrd reproduce``)."""
    settings = {**DEMO, "train": dict(DEMO["train"])}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return make_arguments(None, **settings)


__all__ = [
    "METHODS",
    "PAPER_TABLE1",
    "ReproduceArguments",
    "ReproduceResult",
    "demo_arguments",
    "make_arguments",
    "paper_gains",
    "plan",
    "reproduce",
]
