"""The ``dhrd`` commands: each parses its options, calls the Python API and prints. No logic of its own.

What they print and how bad input becomes one line is ``printing``; the entry point that turns every other
failure into one line is ``entry_point``."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import typer

from ..errors import DHRDInputError
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
from ..reproduction.arguments import ReproduceArguments
from ..reproduction.demo import DemoArguments
from .printing import (
    command_work,
    console,
    fail,
    metrics_table,
    one_line_errors,
    out,
    print_alpha_search,
    print_classes,
    print_table,
    warn_not_learnt,
)
from .rationales_report import print_rationales_summary, train_commands

app = typer.Typer(
    add_completion=False,
    # plain help: Rich markup would swallow every hand-written "[default: ...]" as a markup tag
    rich_markup_mode=None,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Dual-Head Reasoning Distillation: decoder-only LMs as fast, accurate text classifiers.",
)


def evaluation_file_name(split: str, file: Path | None = None, dataset: str | None = None) -> str:
    """Where ``dhrd evaluate`` writes its metrics beside the model: ``eval-<split>.json`` for a split of the
    model's own data or a dataset, ``eval-file-<file name>.json`` for a file (never a split's file, which a
    file named validation.csv would otherwise overwrite)."""
    if file is not None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(file).name).strip("_") or "file"
        return f"eval-file-{name}.json"
    return f"eval-{split}.json"


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

    one_line_errors(lambda: check_train_arguments(list(ctx.args)))  # --help and option errors, without torch
    from ..training.argparser import parse_train_arguments
    from ..training.run import train as run_training

    args = command_work(lambda: parse_train_arguments(list(ctx.args)))
    result = command_work(lambda: run_training(args))
    if not result.is_main_process:
        return
    chosen_by = result.metrics.get("metric_for_best_model")
    kept = f"best epoch by {chosen_by}" if chosen_by else "last epoch"
    if result.metrics.get("stopped_early"):
        kept += f", stopped early after epoch {result.metrics['epochs'][-1]['epoch']:g}"
    if result.metrics.get("validation_scored") is False:
        out.print(f"validation: not scored (--skip-validation; {kept}) - {result.model_dir}")
    else:
        out.print(metrics_table(result.metrics, f"validation metrics ({kept}) - {result.model_dir}"))
        print_classes(result.metrics.get("classes", {}))
        warn_not_learnt(result.metrics, "validation")
    if result.metrics.get("alpha_search"):  # --alpha auto: what was chosen, from what, at what cost
        print_alpha_search(result.metrics["alpha_search"])
    test = result.metrics.get("test")
    if test:  # --test-file: scored once, by the kept model
        out.print(metrics_table(test, f"test metrics ({test['file']}) - {result.model_dir}"))
        warn_not_learnt(test, test["file"])
    out.print(f"model: {result.model_dir}\nmetrics: {Path(args.output_dir) / 'metrics.json'}")


@command(app, EvaluateArguments, run=one_line_errors)
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

    metrics, target = command_work(go)
    scored = f"{file}" if file else f"{dataset} {split}" if dataset else f"the {split} split"
    out.print(metrics_table(metrics, f"metrics on {scored} - {model}"))
    print_classes(metrics["classes"])
    warn_not_learnt(metrics, scored)
    out.print(
        f"{metrics['rows']} rows in {metrics['seconds']:.1f} s ({metrics['rows_per_second']:.1f} rows/s); "
        f"written to {target} and {metrics['confusion_png']}"
    )


@command(app, PredictArguments, run=one_line_errors)
def predict(args: PredictArguments):
    """Classify every row of a file (or a task split) and write the predictions, chunk by chunk."""
    from ..inference.prediction import predict as run_prediction

    summary = command_work(
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


@command(app, ExportArguments, run=one_line_errors)
def export(args: ExportArguments):
    """Export a trained classifier (either head) to ONNX: the graph, its labels and tokenizer in one directory."""
    from ..inference.onnx_export import export_onnx
    from ..inference.onnx_int8_check import int8_check_line, refusal_line

    summary = command_work(
        lambda: export_onnx(
            args.model,
            args.output,
            format=args.format,
            quantize=args.quantize,
            trust_remote_code=args.trust_remote_code,
            restart=args.restart,
            check_file=args.check_file,
            int8_min_agreement=args.int8_min_agreement,
            int8_max_accuracy_change=args.int8_max_accuracy_change,
            warn_if_refused=False,  # the command ends with that line as its error
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
    if summary.int8_refused:  # the fp32 export is there and whole; the int8 file was not kept: one line, code 2
        raise fail(refusal_line(summary.int8_check, summary.directory))


@command(app, RationalesArguments, run=one_line_errors)
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
        except RationalesInterrupted as stop:  # the summary so far, then command_work's "interrupted" line
            print_rationales_summary(stop.path, stop.summary, "interrupted: ")
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

    path, summary = command_work(go)
    print_rationales_summary(path, summary)
    if summary.get("asked_ids"):
        out.print(f"rows: {summary['selection_reason']}\nasked about: {summary['asked_ids']}", soft_wrap=True)
    commands = train_commands(path, args.train_file, vars(args), summary)
    out.print(f"cache: {path}\ntrain with: {commands[0]}", soft_wrap=True)
    if len(commands) > 1:
        out.print(f"or, on the explained rows only: {commands[1]}", soft_wrap=True)


@command(app, ExplainArguments, run=one_line_errors)
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
    for result in command_work(go):
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


@command(app, BenchmarkCommand, run=one_line_errors)
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

    result = command_work(go)
    title = f"{task} validation, {result.inputs.get('examples')} examples - {result.provenance['machine']['cpu']}"
    print_table(title, COLUMNS, table_rows(result))
    print_table("command-line start-up (each in a fresh interpreter)", STARTUP_COLUMNS, startup_rows(result.startup))
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

    result = command_work(go)
    title = f"training throughput, {task}, {examples} examples - {result['provenance']['machine']['cpu']}"
    print_table(title, TRAIN_COLUMNS, train_rows(result))
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


@command(app, ReproduceArguments, build=_reproduce_arguments, run=one_line_errors)
def reproduce(args: ReproduceArguments):
    """The paper's experiment: every (task, method, seed) trained and scored, DHRD's gain beside the paper's,
    QPS per method; results.md/json/csv/png. Resumable: run it again and only unfinished cells run."""
    from ..reproduction import reproduce as run_reproduce

    def go():
        return run_reproduce(args), Path(args.results_dir or args.output_dir)

    result, where = command_work(go)
    _print_reproduce(result)
    out.print(f"written: {where}/results.md, results.json, results.csv, results.png")


@command(app, DemoArguments, run=one_line_errors)
def demo(demo_args: DemoArguments):
    """The whole DHRD story in minutes on a CPU: train pooled and DHRD on a small task, evaluate both beside the
    task's majority floor, benchmark them against chain-of-thought decoding on the same backbone, print the
    table."""
    from ..reproduction import reproduce as run_reproduce

    args = command_work(demo_args.reproduce_arguments)
    result = command_work(lambda: run_reproduce(args))
    _print_reproduce(result)
    out.print(f"written: {args.output_dir}/results.md, results.json, results.csv, results.png")


@command(app, PushArguments, run=one_line_errors)
def push(args: PushArguments):
    """Upload a trained model to the Hugging Face Hub: weights, config, tokenizer, modeling code and its model
    card (README.md), never checkpoints or evaluate's JSON. The local folder is never changed."""
    from ..hub import describe, push_plan
    from ..hub import push as push_model

    if args.dry_run:
        lines = command_work(lambda: describe(push_plan(args.model_dir, args.repo_id), args.private))
        out.print("\n".join(lines), highlight=False, soft_wrap=True)
        return
    url = command_work(lambda: push_model(args.model_dir, args.repo_id, private=args.private, token=args.token))
    out.print(f"pushed to {url}")
