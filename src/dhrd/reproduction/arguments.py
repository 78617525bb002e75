"""What ``dhrd reproduce`` runs: its arguments, from defaults, a config file (TOML or YAML) and the command
line, and the methods it can compare."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import DHRDInputError
from ..tables import read_text
from ..tasks import TASKS, parse_task_names

METHODS = ("pooled", "dhrd", "dhrd-shuffled", "cot", "cot-zero-shot")
TRAINED_METHODS = ("pooled", "dhrd", "dhrd-shuffled", "cot")
# classifiers compared with the pooled baseline, paired by seed and example, with a confidence interval
PAIRED_METHODS = ("dhrd", "dhrd-shuffled")
COT_METHODS = ("cot", "cot-zero-shot")


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
        from ..training import DHRDTrainingArguments

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
