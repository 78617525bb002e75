"""Own-data tasks of ``dhrd reproduce``: an entry of ``--tasks`` that is a path to an own-data config (the YAML,
JSON or TOML file ``dhrd train --config`` reads: train_file, validation_file, test_file, columns, instruction) is
a task named by the file's stem. Its data settings go to every training cell of the task; it is scored on its
test file where it has one (the validation file then only picks the epoch), else on its validation split. Its
rules are ``tasks.OWN_DATA``'s (``tasks.task_rules``), so the floors, statistics and methods ask them as they ask
a SuperGLUE task's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.tasks import TASKS, task_rules
from ..errors import DHRDInputError

if TYPE_CHECKING:
    from .arguments import ReproduceArguments

CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
# the data settings reproduce itself gives every training cell (its caps, seeds and run folders)
REPRODUCE_SET = frozenset({"output_dir", "task", "data_dir", "max_train_examples", "max_eval_examples", "subset_seed"})
FILES = ("train_file", "validation_file", "test_file", "rationales")


def is_config_path(entry: str) -> bool:
    """An entry of ``--tasks`` that names a file rather than a SuperGLUE task."""
    return Path(entry).suffix.lower() in CONFIG_SUFFIXES or "/" in entry or "\\" in entry


def task_name(path: str | Path) -> str:
    """An own-data task is named by its config file's stem, lower-cased as task names and per-task caps are."""
    return Path(path).stem.lower()


def own_data_settings() -> frozenset[str]:
    """What an own-data config may set: ``dhrd train``'s data settings (and a rationale file), less those reproduce
    sets for every cell. Training settings (learning rate, epochs, ...) are reproduce's, the same for every task."""
    from ..training.run import DHRDTrainingArguments

    data = {f.name for f in dataclasses.fields(DHRDTrainingArguments) if f.metadata.get("group") == "data"}
    return frozenset((data | {"rationales"}) - REPRODUCE_SET)


@dataclass(frozen=True)
class OwnDataTask:
    name: str
    config: str  # the path as given
    settings: dict  # its DHRDTrainingArguments data fields

    @property
    def scored_split(self) -> str:
        """``test`` where the config gives a test file, else ``validation``."""
        return "test" if self.settings.get("test_file") else "validation"

    def split_text(self) -> str:
        """Where the scored examples come from, in words the tables print."""
        if self.settings.get("test_file"):
            return f"test file {self.settings['test_file']}"
        if self.settings.get("validation_file"):
            return f"validation file {self.settings['validation_file']}"
        source = self.settings.get("train_file") or self.settings.get("dataset")
        return f"validation split of {source}"

    def data_spec(self, subset_seed: int):
        """The data spec every cell of the task trains with (the carved validation split seeded as theirs)."""
        from ..training.run import DHRDTrainingArguments

        args = DHRDTrainingArguments(output_dir="unused", subset_seed=subset_seed, **self.settings)
        spec = args.data_spec()
        spec.validate()
        return spec

    def scored_examples(self, args: ReproduceArguments) -> list:
        """The examples every classifier of the task is scored on: the capped, seeded sample training scores."""
        from ..data.selection import sample_examples

        spec = self.data_spec(args.subset_seed)
        labels = spec.label_names()
        cap = args.eval_cap(self.name)
        rows = spec.split(self.scored_split, labels, cap, args.subset_seed)
        return sample_examples(rows, cap, args.subset_seed)

    def label_names(self, args: ReproduceArguments) -> tuple[str, ...]:
        return tuple(self.data_spec(args.subset_seed).label_names())

    def check_zero_shot(self, subset_seed: int) -> None:
        """Refuse zero-shot CoT on labels without names before any cell runs (``setup.zero_shot_labels``)."""
        from ..cot.setup import zero_shot_labels

        zero_shot_labels(self.data_spec(subset_seed), f"{self.config}: ")

    def cot_inputs(self, args: ReproduceArguments, model: str | None, examples: list | None = None):
        """Zero-shot CoT's queries on ``examples``, by default the first ``cot_eval_examples`` of the examples the
        classifiers are scored on."""
        from ..cot.setup import own_data_inputs
        from ..inference.evaluation import first_examples

        if examples is None:
            examples = first_examples(self.scored_examples(args), args.cot_cap(self.name))
        return own_data_inputs(self.data_spec(args.subset_seed), self.scored_split, examples, model)

    def zero_shot_setup(self, args: ReproduceArguments, model: str | None, rationales: str | None, examples=None):
        """Zero-shot CoT's queries (``cot_inputs``) and its decode setting: one setup for the CoT cell, which
        scores it, and the throughput cell, which times it."""
        from ..cot.setup import decode_settings

        inputs = self.cot_inputs(args, model, examples)
        budget = self.greedy_budget(args, rationales, inputs.tokenizer)
        return inputs, decode_settings((args.cot_setting,), self.name, inputs.tokenizer, rationales, budget)[0]

    def greedy_budget(self, args: ReproduceArguments, rationales: str | None, tokenizer) -> int | None:
        """Greedy CoT's budget, fitted to the task's training rationales as a SuperGLUE task's is (None under
        the paper's setting): its rationale column, its rationale file, else the teacher's cache ``rationales``."""
        if args.cot_setting != "greedy":
            return None
        from ..cot.baseline import fitted_max_new_tokens
        from ..data.inputs import file_rationales
        from ..data.rationales import read_rationales

        spec = self.data_spec(args.subset_seed)
        if spec.rationale_column:
            found = file_rationales(spec.source("train"), spec.columns, spec.rationale_column, spec.encoding)
        elif self.settings.get("rationales") or rationales:
            found = read_rationales(Path(self.settings.get("rationales") or rationales), spec.encoding)
        else:
            raise DHRDInputError(f"{self.config}: no rationales to fit greedy CoT's budget to: use cot_setting paper")
        return fitted_max_new_tokens(found.values(), tokenizer)


def read_task(path: str | Path) -> OwnDataTask:
    """An own-data config, checked: its settings are data settings, it names a training file or dataset, and
    every file it names exists (one line naming the config and the setting otherwise)."""
    from ..training.run import DHRDTrainingArguments
    from ..training.train_options import read_config

    known = {f.name for f in dataclasses.fields(DHRDTrainingArguments) if f.init}
    settings = read_config(Path(path), known)
    allowed = own_data_settings()
    others = sorted(set(settings) - allowed)
    if others:
        raise DHRDInputError(
            f"{path}: {', '.join(others)}: not a data setting of an own-data task (dhrd reproduce sets the "
            "training settings, caps and seeds of every task: --learning-rate, --epochs, --max-train-examples, ... "
            "or train: in its config)"
        )
    if not settings.get("train_file") and not settings.get("dataset"):
        raise DHRDInputError(f"{path}: an own-data task needs train_file (or dataset)")
    for key in FILES:
        if settings.get(key) is not None and not Path(settings[key]).is_file():
            raise DHRDInputError(f"{path}: {key} {settings[key]}: file not found")
    name = task_name(path)
    if name in TASKS or name == "all":
        raise DHRDInputError(f"{path}: an own-data task is named by its file's stem, and {name!r} is taken: rename it")
    return OwnDataTask(name, str(path), settings)


def resolve_tasks(entries, configs: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """``--tasks`` entries (SuperGLUE names, 'all', own-data config paths, or names of own-data tasks already
    resolved into ``configs``) as task names, and the own-data tasks' configs by name."""
    from ..data.tasks import parse_task_names

    entries = [entries] if isinstance(entries, str) else list(entries)
    entries = [e.strip() for part in entries for e in str(part).split(",") if e.strip()]
    names: list[str] = []
    found: dict[str, str] = {}
    for entry in entries:
        if entry in configs or is_config_path(entry):
            task = read_task(configs.get(entry, entry))
            if found.get(task.name, task.config) != task.config:
                raise DHRDInputError(f"two own-data configs are named {task.name}: {found[task.name]}, {task.config}")
            found[task.name] = task.config
            names.append(task.name)
        elif entry.lower() in TASKS or entry.lower() == "all":
            names += parse_task_names(entry)
        else:
            raise DHRDInputError(
                f"unknown task {entry!r}: choose from {', '.join(TASKS)}, 'all', or an own-data config (a "
                f"{'/'.join(CONFIG_SUFFIXES)} file, named by its stem)"
            )
    if not names:
        raise DHRDInputError(f"unknown task (none): choose from {', '.join(TASKS)}, 'all', or an own-data config")
    return list(dict.fromkeys(names)), found


def own_task(args: ReproduceArguments, task: str) -> OwnDataTask | None:
    """The own-data task of that name, or None for a SuperGLUE task."""
    path = args.own_data.get(task)
    return None if path is None else read_task(path)


def task_title(task: str) -> str:
    """How the tables name a task: a SuperGLUE task by its folder (CB), an own-data task by its name."""
    rules = task_rules(task)
    return task if rules.own_data else rules.folder


# ------------------------------------------------------------------------------------ the cells' parts
def training_settings(args: ReproduceArguments, task: str) -> dict:
    """An own-data task's settings on top of every training cell's (none for a SuperGLUE task). A task scored on
    its test file does not score its validation file at the end (``--skip-validation``): no table reads it, and it
    is still read where an epoch is chosen on it."""
    own = own_task(args, task)
    if own is None:
        return {}
    return {"task": None, **own.settings, **({"score_validation": False} if own.scored_split == "test" else {})}


def scored_result(args: ReproduceArguments, task: str, metrics: dict) -> dict:
    """A training cell's metrics as the tables read them: for an own-data task, the scored split's (its test
    file where it has one) under the task's name; a SuperGLUE task's as they are."""
    own = own_task(args, task)
    if own is None:
        return metrics
    scored = metrics if own.scored_split == "validation" else metrics.get("test")
    if scored is None:
        raise DHRDInputError(f"{own.config}: the finished run of {task} has no test scores: run it again (--restart)")
    per_task = next(iter(scored["tasks"].values()))  # the run's rows all carry tasks.OWN_DATA's name
    return {**metrics, "score": scored["score"], "tasks": {task: per_task}, "split": own.scored_split}


def predictions_file(args: ReproduceArguments, task: str) -> str:
    """The per-row probabilities of a training cell's scored split."""
    from ..training.run import PREDICTIONS_FILE, TEST_PREDICTIONS_FILE

    own = own_task(args, task)
    return TEST_PREDICTIONS_FILE if own is not None and own.scored_split == "test" else PREDICTIONS_FILE


def rationale_source(args: ReproduceArguments, own: OwnDataTask, progress: bool = True) -> tuple[str | None, dict]:
    """Where an own-data task's rationales come from: its rationale column or the rationale file its config
    names (both reach training through its settings), else a teacher's cache made now, resumably, for the
    capped training rows only (``dhrd rationales`` on the task's training file)."""
    settings = own.settings
    if settings.get("rationale_column"):
        source = f"{settings.get('train_file') or settings.get('dataset')}, column {settings['rationale_column']}"
        return None, {"source": source, "origin": "the task's rationale column"}
    if settings.get("rationales"):
        return None, {"source": settings["rationales"], "origin": "the task's rationale file"}
    if not args.teacher:
        raise DHRDInputError(
            f"{own.config}: no rationales for {own.name}: give its config a rationale_column or a rationales file, "
            "or reproduce a teacher (--teacher, with --teacher-base-url for a server)"
        )
    from ..data.datasets_input import dataset_split
    from ..teacher.teachers import make_rationales

    spec = own.data_spec(args.subset_seed)
    source = spec.train_file or dataset_split(spec.dataset, "train", spec.dataset_config)
    path, summary = make_rationales(
        train_file=source,
        columns=spec.columns,
        teacher=args.teacher,
        base_url=args.teacher_base_url,
        output=_teacher_cache(args, own),
        max_examples=args.train_cap(own.name),
        subset_seed=args.subset_seed,
        encoding=spec.encoding,
        instruction=spec.instruction,
        validation_fraction=spec.validation_fraction if spec.carves_validation else 0.0,
        selection=settings.get("selection", "seeded"),
        progress=progress,
        **dict(args.teacher_options),
    )
    return str(path), teacher_record(path, summary)


def teacher_record(path: Path, summary: dict) -> dict:
    """What the tables say of rationales a teacher wrote: the cache file, the teacher, and how many it holds
    for how many examples (SuperGLUE and own-data tasks alike)."""
    return {
        "source": str(path),
        "teacher": summary["teacher"],
        "rationales": summary["rationales_in_cache"],
        "examples": summary["examples"],
    }


def _teacher_cache(args: ReproduceArguments, own: OwnDataTask) -> Path:
    from ..teacher.teachers import teacher_slug

    return Path(args.output_dir) / "rationales" / teacher_slug(args.teacher) / own.name


def existing_rationales(args: ReproduceArguments, own: OwnDataTask) -> str | None:
    """The rationale file an own-data task's cells trained with, without asking any teacher (None: its column
    or its config's file, which its settings carry)."""
    if own.settings.get("rationale_column") or own.settings.get("rationales") or not args.teacher:
        return None
    found = sorted(_teacher_cache(args, own).glob("*/train.jsonl"))
    return str(found[0]) if found else None
