"""The ``dhrd`` command line: parses options, calls the Python API, prints. No logic of its own."""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
import traceback
import warnings
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import DHRDInputError
from ..memory import cap_onednn_cache, pin_mmap_threshold
from ..openmp import passive_openmp_wait
from ..options.cli_options import command
from ..options.command_args import (
    BenchmarkCommand,
    EvaluateArguments,
    ExplainArguments,
    ExportArguments,
    PredictArguments,
    PushArguments,
    RationalesArguments,
)
from ..provenance import save_traceback
from ..reproduction.arguments import ReproduceArguments
from ..reproduction.demo import DemoArguments

app = typer.Typer(
    add_completion=False,
    # plain help: Rich markup would swallow every hand-written "[default: ...]" as a markup tag
    rich_markup_mode=None,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Dual-Head Reasoning Distillation: decoder-only LMs as fast, accurate text classifiers.",
)
# no emoji codes: a user's text such as "f1:x:" in an error or a label name must print as written
console = Console(stderr=True, emoji=False)
out = Console(emoji=False)


def _run(fn):
    """A command's work. Bad input: one line on stderr and exit code 2, never a traceback."""
    hide_transformers_bars()
    return _one_line_errors(fn)


def _one_line_errors(fn):
    """Bad input: one line on stderr and exit code 2, never a traceback."""
    try:
        return fn()
    except DHRDInputError as error:  # brackets in it are text (pip install 'dhrd[tensorboard]'), not markup
        console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("interrupted: what was written so far is kept; run the same command again to resume")
        raise typer.Exit(130) from None


def evaluation_file_name(split: str, file: Path | None = None, dataset: str | None = None) -> str:
    """Where ``dhrd evaluate`` writes its metrics beside the model: ``eval-<split>.json`` for a split of the
    model's own data or a dataset, ``eval-file-<file name>.json`` for a file (never a split's file, which a
    file named validation.csv would otherwise overwrite)."""
    if file is not None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(file).name).strip("_") or "file"
        return f"eval-file-{name}.json"
    return f"eval-{split}.json"


def _metrics_table(metrics: dict, title: str) -> Group:
    # the title (it names files and folders) is a line of its own: as a table title it would fold at the table's
    # width, splitting a path mid-name however wide the terminal
    table = Table()
    table.add_column("task")
    table.add_column("metrics")
    table.add_column("score", justify="right")
    for name, values in metrics["tasks"].items():
        shown = ", ".join(f"{k} {v:.2f}" for k, v in values.items() if k not in ("score", "examples", "rows"))
        table.add_row(name, f"{shown} ({values['examples']} examples)", f"{values['score']:.2f}")
    if len(metrics["tasks"]) > 1:
        table.add_row("average", "", f"{metrics['score']:.2f}")
    return Group(Text(title, style="italic"), table)


def _print_classes(classes: dict, shown: int = 20) -> None:
    """The per-class report, one table per task (the first ``shown`` classes; the JSON has them all)."""
    for task, report in classes.items():
        table = Table(title=f"{task}: per class (per {report['unit']})")
        for column in ("class", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "class" else "right")
        rows = list(report["per_class"].items())
        for name, values in [*rows[:shown], ("macro avg", report["macro_avg"])]:
            scores = [f"{values[k]:.1f}" for k in ("precision", "recall", "f1")]
            table.add_row(escape(str(name)), *scores, str(values["support"]))
        out.print(table)
        if len(rows) > shown:
            out.print(f"({len(rows) - shown} more classes in the JSON)")


def _version(value: bool) -> None:
    if value:
        from ..provenance import dhrd_version

        out.print(f"dhrd {dhrd_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print dhrd's version and exit"
    ),
):
    """Dual-Head Reasoning Distillation: decoder-only LMs as fast, accurate text classifiers."""


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def train(ctx: typer.Context):
    """Train a classifier, evaluate it on the validation split every epoch, keep the best, save it (options:
    dhrd train --help)."""
    from ..training.train_options import check_train_arguments

    _one_line_errors(lambda: check_train_arguments(list(ctx.args)))  # --help and option errors, without torch
    from ..training.argparser import parse_train_arguments
    from ..training.run import train as run_training

    args = _run(lambda: parse_train_arguments(list(ctx.args)))
    result = _run(lambda: run_training(args))
    if not result.is_main_process:
        return
    chosen_by = result.metrics.get("metric_for_best_model")
    kept = f"best epoch by {chosen_by}" if chosen_by else "last epoch"
    if result.metrics.get("stopped_early"):
        kept += f", stopped early after epoch {result.metrics['epochs'][-1]['epoch']:g}"
    if result.metrics.get("validation_scored") is False:
        out.print(f"validation: not scored (--skip-validation; {kept}) - {result.model_dir}")
    else:
        out.print(_metrics_table(result.metrics, f"validation metrics ({kept}) - {result.model_dir}"))
        _print_classes(result.metrics.get("classes", {}))
    test = result.metrics.get("test")
    if test:  # --test-file: scored once, by the kept model
        out.print(_metrics_table(test, f"test metrics ({test['file']}) - {result.model_dir}"))
    out.print(f"model: {result.model_dir}\nmetrics: {Path(args.output_dir) / 'metrics.json'}")


@command(app, EvaluateArguments, run=_one_line_errors)
def evaluate(args: EvaluateArguments):
    """Compute the task's official metrics and the per-class report and confusion matrix; write them as JSON,
    and the confusion matrix as a PNG beside it."""
    from ..inference.engines import model_file
    from ..inference.evaluation import evaluate as run_evaluation

    model, split, file, dataset = args.model, args.split, args.file, args.dataset

    def go():
        target = args.output or model_file(model, args.engine).parent / evaluation_file_name(split, file, dataset)
        return run_evaluation(
            model,
            args.task,
            split,
            str(args.data_dir) if args.data_dir else None,
            str(file) if file else None,
            args.text_column,
            args.text_pair_column,
            args.label_column,
            target,
            args.batch_size,
            args.max_examples,
            compile=args.compile,
            trust_remote_code=args.trust_remote_code,
            encoding=args.encoding,
            max_length=args.max_length,
            truncation=args.truncation,
            dataset=dataset,
            dataset_config=args.dataset_config,
            engine=args.engine,
        ), target

    metrics, target = _run(go)
    scored = f"{file}" if file else f"{dataset} {split}" if dataset else f"the {split} split"
    out.print(_metrics_table(metrics, f"metrics on {scored} - {model}"))
    _print_classes(metrics["classes"])
    out.print(
        f"{metrics['rows']} rows in {metrics['seconds']:.1f} s ({metrics['rows_per_second']:.1f} rows/s); "
        f"written to {target} and {metrics['confusion_png']}"
    )


@command(app, PredictArguments, run=_one_line_errors)
def predict(args: PredictArguments):
    """Classify every row of a file (or a task split) and write the predictions, chunk by chunk."""
    from ..inference.prediction import predict as run_prediction

    summary = _run(
        lambda: run_prediction(
            args.model,
            args.output,
            str(args.file) if args.file else None,
            args.task,
            args.split,
            str(args.data_dir) if args.data_dir else None,
            args.text_column,
            args.text_pair_column,
            args.batch_size,
            compile=args.compile,
            trust_remote_code=args.trust_remote_code,
            id_column=args.id_column,
            keep_columns=args.keep_columns or (),
            encoding=args.encoding,
            max_length=args.max_length,
            truncation=args.truncation,
            chunk_rows=args.chunk_rows,
            resume=not args.restart,
            dataset=args.dataset,
            dataset_config=args.dataset_config,
            engine=args.engine,
        )
    )
    if not summary.main_process:  # accelerate launched several: the main one reports
        return
    if summary.complete:
        out.print(f"already complete: {summary.rows} rows in {summary.output} (left as is; --restart predicts again)")
        return
    resumed = f", resumed after row {summary.resumed_from}" if summary.resumed_from else ""
    if summary.resumed_from and summary.processes > 1:  # the rows the shards held, from all over the input
        resumed = f", {summary.resumed_from} rows resumed"
    ids = f"ids from column {summary.id_column!r}" if summary.id_column else "ids are 1-based row numbers"
    shared = f", shared by {summary.processes} processes" if summary.processes > 1 else ""
    out.print(
        f"{summary.rows} predictions written to {summary.output} ({ids}{resumed}{shared}; "
        f"{summary.rows_per_second:.1f} rows/s)"
    )


@command(app, ExportArguments, run=_one_line_errors)
def export(args: ExportArguments):
    """Export a trained classifier (either head) to ONNX: the graph, its labels and tokenizer in one directory."""
    from ..inference.onnx_export import export_onnx
    from ..inference.onnx_int8_check import int8_check_line

    summary = _run(
        lambda: export_onnx(
            args.model,
            args.output,
            format=args.format,
            quantize=args.quantize,
            trust_remote_code=args.trust_remote_code,
            restart=args.restart,
            check_file=args.check_file,
        )
    )
    for precision, name in summary.files.items():
        diff = summary.max_abs_prob_diff[precision]
        out.print(
            f"{precision}: {Path(summary.directory) / name} (largest probability difference from torch {diff:.2g})"
        )
    if summary.int8_check:
        out.print(int8_check_line(summary.int8_check))
    out.print(
        f"labels {', '.join(summary.labels)}; {summary.seconds:.0f} s. Run it with: dhrd predict --model "
        f"{summary.directory} --engine onnxruntime --file <file> --output <predictions>"
    )


@command(app, RationalesArguments, run=_one_line_errors)
def rationales(args: RationalesArguments):
    """Ask a teacher for a rationale for every training example, into a cache `dhrd train --rationales`
    reads. Resumable: kill it at any moment and run the same command again."""
    from ..data.datasets_input import dataset_split
    from ..data.inputs import Columns, parse_label_map
    from ..teacher.asking import RationalesInterrupted
    from ..teacher.teachers import make_rationales

    def go():
        try:
            return ask()
        except RationalesInterrupted as stop:  # the summary so far, then _run's "interrupted" line
            _print_rationales_summary(stop.path, stop.summary, "interrupted: ")
            raise

    def ask():
        args.validate()
        own = args.train_file or args.dataset
        columns = (args.text_column, args.label_column, args.text_pair_column, args.id_column)
        return make_rationales(
            task=None if own else (args.task or "cb"),
            train_file=dataset_split(args.dataset, "train", args.dataset_config) if args.dataset else args.train_file,
            columns=Columns(*columns, parse_label_map(args.label_names)),
            data_dir=args.data_dir,
            teacher=args.teacher,
            gguf_file=args.gguf_file,
            base_url=args.base_url,
            import_file=args.import_file,
            id_column=args.import_id_column or args.id_column,
            rationale_column=args.rationale_column,
            output=args.output,
            prompt_mode=args.prompt,
            template_file=args.template,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            timeout=args.timeout,
            max_retries=args.max_retries,
            api_key_env=args.api_key_env,
            policy=args.on_problem,
            retries=args.retries,
            checks=list(args.checks),
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            limit=args.limit,
            max_examples=args.max_examples,
            subset_seed=args.subset_seed,
            encoding=args.encoding,
            instruction=args.instruction,
            validation_fraction=0.0 if args.validation_file else args.validation_fraction,
            selection=args.selection,
        )

    path, summary = _run(go)
    _print_rationales_summary(path, summary)
    if summary.get("asked_ids"):
        out.print(f"rows: {summary['selection_reason']}\nasked about: {summary['asked_ids']}", soft_wrap=True)
    commands = _train_commands(path, args.train_file, vars(args), summary)
    out.print(f"cache: {path}\ntrain with: {commands[0]}", soft_wrap=True)
    if len(commands) > 1:
        out.print(f"or, on the explained rows only: {commands[1]}", soft_wrap=True)


def _print_rationales_summary(path: Path, summary: dict, prefix: str = "") -> None:
    """The end-of-run table of ``dhrd rationales`` (also what an interrupted run had done)."""
    table = Table(title=f"{prefix}rationales - {summary['teacher']} / {summary['prompt_id']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in (
        "examples",
        "already_cached",
        "written",
        "outcomes",
        "problems_in_written_rows",
        "retries",
        "teacher_agreement",
        "rows_per_second",
        "generated_tokens_per_second",
        "rationales_in_cache",
        "torn_row_removed",
    ):
        table.add_row(key, str(summary[key]))
    if summary["max_examples"]:
        cap = f"--max-examples {summary['max_examples']}, --selection {summary['selection']}"
        cap += f", --subset-seed {summary['subset_seed']}" if summary["selection"] == "seeded" else ""
        table.add_row("selected_examples", f"{summary['selected_examples']} ({cap})")
    out.print(table)
    if prefix:
        record = path.with_name("train.summary.json")
        out.print(f"{prefix}{summary['rows_in_cache']} rows in {path}; its summary: {record}")


def _train_commands(cache: Path, train_file: Path | None, given: dict, summary: dict) -> list[str]:
    """The ``dhrd train`` that uses a rationale cache, as it runs when pasted: a task's reads the folder of
    <Task>/train.jsonl, a file's (or dataset's) the cache file itself, with the options that describe the file
    and hold out the same validation rows. Where the teacher explained a capped subset, a second command trains
    on those rows only (the first trains on every training row; rows without a rationale train the classifier
    only)."""
    if given.get("dataset"):
        words = ["dhrd", "train", "--dataset", given["dataset"]]
        words += ["--dataset-config", given["dataset_config"]] if given.get("dataset_config") else []
    elif train_file is None:
        words = ["dhrd", "train", "--task", summary.get("task") or given.get("task") or "cb"]
    else:
        words = ["dhrd", "train", "--train-file", str(train_file)]
    defaults = {"text_column": "text", "label_column": "label", "encoding": "utf-8"}
    options = ["text_column", "text_pair_column", "label_column", "id_column", "label_names", "instruction"]
    options += ["encoding", "validation_file", "validation_fraction"]
    for option in options:
        if given.get(option) not in (None, defaults.get(option)):
            words += ["--" + option.replace("_", "-"), str(given[option])]
    seed = summary.get("subset_seed") if summary.get("subset_seed") is not None else given.get("subset_seed")
    if seed not in (None, 42) and (train_file is not None or summary.get("max_examples")):
        words += ["--subset-seed", str(seed)]  # it seeds the held-out validation rows and the capped sample
    rationales = str(cache) if train_file is not None or given.get("dataset") else str(cache.parent.parent)
    words += ["--method", "dhrd", "--rationales", rationales]
    commands = [shlex.join(words)]
    if summary.get("max_examples"):
        capped = words + ["--max-train-examples", str(summary["max_examples"])]
        capped += ["--selection", "first"] if summary.get("selection") == "first" else []
        commands.append(shlex.join(capped))
    return commands


@command(app, ExplainArguments, run=_one_line_errors)
def explain(args: ExplainArguments):
    """SLOW, for inspection only: the reasoning head writes a rationale for each input. Predictions always
    come from the pooled head and never use this text."""
    from ..cot.explain import explain as run_explain
    from ..inference.evaluation import examples_for_model
    from ..modeling import load_classifier
    from ..runtime import write_jsonl_atomic

    def go():
        args.validate()  # before any model loads
        texts = list(args.text or [])
        if not texts:
            classifier, _ = load_classifier(args.model, trust_remote_code=args.trust_remote_code)
            data_dir = str(args.data_dir) if args.data_dir else None
            rows, _ = examples_for_model(classifier, args.task, args.split, data_dir, require_labels=False)
            texts = [r.text for r in rows[: args.max_examples]]
        results = run_explain(args.model, texts, args.max_new_tokens, trust_remote_code=args.trust_remote_code)
        if args.output is not None:
            write_jsonl_atomic(args.output, results)
        return results

    console.print("[yellow]explain decodes with the reasoning head: slow, and not used for predictions[/]")
    for result in _run(go):
        out.print(f"[bold]input[/]: {result['input'][-300:]}")
        out.print(
            f"[bold]reasoning head[/]: {result['rationale']}  [dim](answer: {result['reasoning_head_answer']})[/]"
        )
        out.print(f"[bold]classifier prediction[/]: {result['prediction']} {result['probabilities']}\n")


def _csv(value: str, cast=str) -> tuple:
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise DHRDInputError(f"cannot read {value!r} as a comma-separated list") from None


@command(app, BenchmarkCommand, run=_one_line_errors)
def benchmark(args: BenchmarkCommand):
    """Accuracy and examples/s of pooled vs DHRD vs chain-of-thought decoding, in one run on this machine;
    with --train, the throughput of the training step instead."""
    from ..benchmarks.benchmark import COLUMNS, table_rows
    from ..benchmarks.benchmark import benchmark as run_benchmark
    from ..benchmarks.startup_benchmark import STARTUP_COLUMNS, startup_rows

    task, output = args.task, args.output
    if args.train:
        _benchmark_training(args)
        return

    def go():
        return run_benchmark(replace(args.benchmark_arguments(), startup=True))

    result = _run(go)
    title = f"{task} validation, {result.inputs.get('examples')} examples - {result.provenance['machine']['cpu']}"
    _print_table(title, COLUMNS, table_rows(result))
    _print_table("command-line start-up (each in a fresh interpreter)", STARTUP_COLUMNS, startup_rows(result.startup))
    for ratio in result.ratios:
        out.print(f"batch {ratio['batch_size']}: DHRD is {ratio['ratio']:.2f}x the examples/s of {ratio['dhrd_over']}")
    for switch in result.fast_path:
        out.print(
            f"inference path: {switch['variant']}: {switch['examples_per_s'] or 'unavailable'} ex/s "
            f"({switch['ratio_to_default'] or '–'}x) {switch.get('error', '')}"
        )
    for row in result.engines.get("rows", []):
        out.print(
            f"engine: {row['system']} {row['engine']} {row['precision']} batch {row['batch_size']}: "
            f"{row['examples_per_s']} ex/s ({row['ratio_to_torch_default']}x torch), "
            f"max |dp| {row['max_abs_prob_diff']}"
        )
    gemm = ", ".join(f"{g['dtype']} {g['tflops']:.3f} TFLOP/s" for g in result.gemm)
    out.print(f"GEMM peak: {gemm}. Written: {output}.json, .md, .png ({result.seconds:.0f} s)")


def _print_table(title: str, columns, rows) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _benchmark_training(args: BenchmarkCommand) -> None:
    from ..benchmarks.training_benchmark import (
        DEFAULT_VARIANTS,
        TRAIN_COLUMNS,
        TrainBenchmarkArguments,
        benchmark_training,
    )
    from ..benchmarks.training_benchmark import table_rows as train_rows

    task, examples, output = args.task, args.train_examples, args.output

    def go():
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        arguments = TrainBenchmarkArguments(
            task=task,
            data_dir=args.data_dir,
            backbone=args.backbone,
            rationales=args.rationales,
            examples=examples,
            methods=_csv(args.train_methods),
            variants=DEFAULT_VARIANTS if args.train_variants is None else _csv(args.train_variants),
            output=str(output),
        )
        return benchmark_training(arguments)

    result = _run(go)
    title = f"training throughput, {task}, {examples} examples - {result['provenance']['machine']['cpu']}"
    _print_table(title, TRAIN_COLUMNS, train_rows(result))
    for x in result.get("dhrd_overhead", []):
        out.print(
            f"{x['variant']}: DHRD/pooled time {x['time_ratio']:.2f}, real tokens {x['token_ratio']:.2f}, "
            f"useful FLOPs {x['flop_ratio']:.2f}"
        )
    for x in result.get("speedup_over_before", []):
        out.print(f"{x['variant']} / {x['method']}: {x['speedup']:.2f}x the epoch speed of 'before'")
    out.print(f"Written: {output}.json, .md, .png")


def _print_reproduce(result) -> None:
    from ..reproduction import markdown

    out.print(markdown(result), markup=False, highlight=False, soft_wrap=True)  # tables must not be wrapped


def _reproduce_arguments(config: Path | None, given: dict):
    from ..reproduction import make_arguments

    return make_arguments(config, **given)


@command(app, ReproduceArguments, build=_reproduce_arguments, run=_one_line_errors)
def reproduce(args: ReproduceArguments):
    """The paper's experiment: every (task, method, seed) trained and scored, DHRD's gain beside the paper's,
    QPS per method; results.md/json/csv/png. Resumable: run it again and only unfinished cells run."""
    from ..reproduction import reproduce as run_reproduce

    def go():
        return run_reproduce(args), Path(args.results_dir or args.output_dir)

    result, where = _run(go)
    _print_reproduce(result)
    out.print(f"written: {where}/results.md, results.json, results.csv, results.png")


@command(app, DemoArguments, run=_one_line_errors)
def demo(demo_args: DemoArguments):
    """The whole DHRD story in minutes on a CPU: train pooled and DHRD on a small task, evaluate both beside the
    task's majority floor, benchmark them against chain-of-thought decoding on the same backbone, print the
    table."""
    from ..reproduction import reproduce as run_reproduce

    args = _run(demo_args.reproduce_arguments)
    result = _run(lambda: run_reproduce(args))
    _print_reproduce(result)
    out.print(f"written: {args.output_dir}/results.md, results.json, results.csv, results.png")


@command(app, PushArguments, run=_one_line_errors)
def push(args: PushArguments):
    """Upload a trained model to the Hugging Face Hub: weights, config, tokenizer, modeling code and its model
    card (README.md), never checkpoints or evaluate's JSON. The local folder is never changed."""
    from ..hub import describe, push_plan
    from ..hub import push as push_model

    if args.dry_run:
        lines = _run(lambda: describe(push_plan(args.model_dir, args.repo_id), args.private))
        out.print("\n".join(lines), highlight=False, soft_wrap=True)
        return
    url = _run(lambda: push_model(args.model_dir, args.repo_id, private=args.private, token=args.token))
    out.print(f"pushed to {url}")


try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, UsageError


def _error_line(message: str) -> None:
    """``error: ...`` on stderr as one line: never wrapped, markup in the message printed as is."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


def _unexpected(error: Exception) -> str:
    """One line for a bug: the error's type and first line, and where its full traceback was saved."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    message = f"unexpected {type(error).__name__}" + (f": {first[:500]}" if first else "")
    try:
        return f"{message} (full traceback saved to {save_traceback(error)})"
    except Exception as failure:  # the cache is not writable: the innermost frame still says where it broke
        frames = traceback.extract_tb(error.__traceback__)
        at = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "unknown place"
        return f"{message} (raised at {at}; the traceback could not be saved: {failure})"


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is at each message, as logging's own last resort does: a
    stream bound once goes stale when a caller (a test runner, a notebook) swaps stderr and closes the old one."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler's constructor assigns it; the current stderr wins
        pass


class _MessageFormat(logging.Formatter):
    """dhrd's information as plain lines (``converting ... once``); its warnings and errors prefixed."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def show_messages() -> None:
    """Other libraries' warnings as ``LEVEL name: message``; dhrd's information (a one-time conversion, what a
    long step is doing) and warnings as plain lines. Handlers of our own, each once: pytest's (caplog) stay."""
    root = logging.getLogger()
    if not any(getattr(h, "dhrd", False) for h in root.handlers):
        libraries = _CurrentStderr()
        libraries.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        libraries.addFilter(lambda record: not record.name.startswith("dhrd"))
        libraries.dhrd = True
        ours = _CurrentStderr()
        ours.setFormatter(_MessageFormat())
        ours.addFilter(lambda record: record.name.startswith("dhrd"))
        ours.dhrd = True
        root.handlers += [libraries, ours]
    root.setLevel(logging.WARNING)
    logging.getLogger("dhrd").setLevel(logging.INFO)
    # peft reads the model's deprecated ``is_gradient_checkpointing`` on every LoRA wrap: a FutureWarning per run
    # that no dhrd call makes and no user can act on
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def hide_transformers_bars() -> None:
    """transformers' own bars (loading and writing weight shards) between a phase's bars: noise in a terminal.
    Trainer's bar and dhrd's are plain tqdm and stay. Called as a command's work starts, not at start-up: help,
    --version and option errors never import transformers."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def main() -> None:
    """The ``dhrd`` entry point: every failure is one line on stderr. Bad input and bad options exit with 2,
    an interrupt with 130, a bug with 1 (its traceback saved to a file; ``DHRD_TRACEBACK=1`` raises it)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    pin_mmap_threshold()  # freed tensors go back to the system at once (dhrd.memory); loads no torch
    cap_onednn_cache()  # oneDNN keeps kernels for 128 shapes, not 1,024 (dhrd.memory)
    passive_openmp_wait()  # torch's threads sleep instead of spinning between operations (dhrd.openmp)
    show_messages()
    try:
        code = app(standalone_mode=False)  # click returns its exceptions to us instead of printing them
    except BrokenPipeError:
        sys.exit(1)
    except UsageError as error:  # a bad, unknown or missing option or command
        if type(error).__name__ != "NoArgsIsHelpError":  # `dhrd` alone: the help is already printed
            hint = f" (see: {error.ctx.command_path} --help)" if error.ctx is not None else ""
            _error_line(error.format_message() + hint)
        sys.exit(2)
    except ClickException as error:
        _error_line(error.format_message())
        sys.exit(error.exit_code)
    except DHRDInputError as error:  # raised outside a command's _run
        _error_line(str(error))
        sys.exit(2)
    except typer.Exit as error:
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("interrupted")
        sys.exit(130)
    except Exception as error:
        if os.environ.get("DHRD_TRACEBACK") == "1":
            raise
        _error_line(_unexpected(error))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]


if __name__ == "__main__":
    main()
