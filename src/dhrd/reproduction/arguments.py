"""What ``dhrd reproduce`` runs: its arguments, from defaults, a config file (TOML or YAML) and the command
line, and the methods it can compare."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import DHRDInputError
from ..options.cli_options import option
from .methods import METHOD_RULES, METHODS

COT_SETTINGS = ("paper", "greedy")
# tasks.TASKS' names, written out: importing tasks takes seconds, which `dhrd reproduce --help` must not (a test
# compares them)
SUPERGLUE_TASKS = ("boolq", "cb", "copa", "multirc", "rte", "wic", "wsc")


def _per_task(value, task: str):
    """A setting that is one value for every task, or ``{task: value, "default": value}``."""
    if isinstance(value, dict):
        return value.get(task, value.get("default"))
    return value


@dataclass
class ReproduceArguments:
    """What ``dhrd reproduce`` runs. Every field can come from a config file (TOML or YAML) and be
    overridden on the command line; ``train`` passes any other ``DHRDTrainingArguments`` field through."""

    tasks: list[str] = option(
        help="SuperGLUE tasks, 'all', or own-data configs (a .yaml/.json/.toml path, as dhrd train --config reads; "
        "the task is named by the file's stem): cb,examples/own-data/comve.yaml",
        factory=lambda: list(SUPERGLUE_TASKS),
    )
    # the own-data tasks among ``tasks``: name -> config path (filled from ``tasks`` by ``validate``)
    own_data: dict = option(cli=False, factory=dict)
    seeds: list[int] = option(help="seeds", factory=lambda: [1, 2, 3])
    methods: list[str] = option(
        help="pooled, dhrd, dhrd-shuffled (another example's rationale: the paper's Table 2), cot (fine-tuned), "
        "cot-zero-shot",
        factory=lambda: ["pooled", "dhrd", "cot"],
    )
    backbone: str | None = option(
        None, "the student (hub name, directory or .gguf) [default: the shared SmolLM2 GGUF, else SmolLM2-135M]"
    )
    data_dir: str | None = option(None, "folder with <Task>/{train,val}.jsonl [default: the shared set]")
    # the cells: training runs, CoT decodes, teacher caches, benchmarks
    output_dir: str = option("runs/reproduce", "where the runs go")
    results_dir: str | None = option(None, "where results.{md,json,csv,png} go [default: --output-dir]")
    # tasks the rationale folder lacks get theirs from the teacher, into <output_dir>/rationales/
    rationales: str | None = option(None, "folder of <Task>/train.jsonl rationales [default: the shared set]")
    teacher: str | None = option(None, "teacher for tasks without rationales (local model, or served name)")
    teacher_base_url: str | None = option(None, "the teacher's OpenAI-compatible server")
    teacher_options: dict = option(cli=False, factory=dict)  # more make_rationales arguments (concurrency, ...)
    # hyper-parameters (the paper's by default; see DHRDTrainingArguments)
    alpha: float = option(1.0, "DHRD's reasoning-loss weight")
    beta: float = option(1.0, "DHRD's classification-loss weight")
    epochs: float | dict = option(
        3.0, "epochs (a config file may give {task: epochs, default: epochs})", cli_type=float
    )
    learning_rate: float = option(2e-4, "AdamW's peak learning rate", aliases=["--lr"])
    batch_size: int = option(8, "training batch size")
    train: dict = option(cli=False, factory=dict)  # any other DHRDTrainingArguments field, for every run
    # caps for CPU budgets: an int for every task or {task: int, "default": int}; reported in every table
    max_train_examples: int | dict | None = option(
        None, "cap per task: 64, or 64,multirc:16 (reported in the table)", cli_type=str
    )
    max_eval_examples: int | dict | None = option(
        None, "cap of validation examples, same form (reported)", cli_type=str
    )
    # every seed trains and is scored on the same capped subset: paired comparisons
    subset_seed: int = option(0, "seed of the capped subsets, the same for every seed")
    cot_setting: str = option(
        "paper", "paper (T=0.1, top_p 0.7, 500 tokens) or greedy (budget fitted to rationales)", choices=COT_SETTINGS
    )
    cot_eval_examples: int | dict | None = option(
        None, "validation examples CoT decodes, same form [default: all evaluated]", cli_type=str
    )
    # throughput (QPS): the benchmark on the first seed's models, first N validation examples
    qps: bool = option(True, "benchmark every method's examples/s")
    qps_examples: int = option(32, "validation examples the benchmark runs on")
    qps_batch_size: int = option(1, "the benchmark's batch size")
    qps_repeats: int = option(3, "the benchmark's timed passes")
    restart: bool = option(False, "run every cell again instead of resuming", flag="--restart")
    tables_only: bool = option(
        False, "rewrite results.* from the finished cells and run nothing else", flag="--tables-only"
    )
    title: str | None = option(None, "the tables' title")

    def validate(self) -> None:
        from ..data.tasks import TASKS
        from .own_data import resolve_tasks

        self.tasks, self.own_data = resolve_tasks(self.tasks, self.own_data)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise DHRDInputError(f"unknown method {', '.join(unknown) or '(none)'}: choose from {', '.join(METHODS)}")
        if not self.seeds:
            raise DHRDInputError("give at least one seed")
        if self.cot_setting not in COT_SETTINGS:
            raise DHRDInputError(f"cot_setting must be paper or greedy, not {self.cot_setting!r}")
        if any(METHOD_RULES[m].cot == "zero-shot" for m in self.methods):  # before any cell trains
            from .own_data import read_task

            for config in self.own_data.values():
                read_task(config).check_zero_shot(self.subset_seed)
        from ..training.run import DHRDTrainingArguments

        known = {f.name for f in fields(DHRDTrainingArguments)}
        bad = sorted(set(self.train) - known)
        if bad:
            raise DHRDInputError(f"train: unknown training argument {', '.join(bad)}")
        for name in ("max_train_examples", "max_eval_examples", "cot_eval_examples", "epochs"):
            value = getattr(self, name)
            if isinstance(value, dict):
                extra = sorted(set(value) - set(TASKS) - set(self.own_data) - {"default"})
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
    """A YAML, JSON or TOML file of ``ReproduceArguments`` fields (dashes or underscores); unknown keys are
    errors. The same reader as ``dhrd train --config``'s."""
    from ..training.train_options import read_config as read_settings

    return read_settings(Path(path), {f.name for f in fields(ReproduceArguments) if f.init})


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
