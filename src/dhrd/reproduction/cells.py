"""The cells of ``dhrd reproduce``, each a thin call into the library whose result is a file: a training run,
a CoT decode of its validation examples, a throughput benchmark, and where a task's rationales come from."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..data.tasks import TASKS
from ..errors import DHRDInputError
from ..runtime import write_json_atomic
from .arguments import ReproduceArguments
from .methods import METHOD_RULES, TRAINED_METHODS
from .own_data import OwnDataTask, own_task, teacher_record, training_settings
from .own_data import existing_rationales as own_existing_rationales
from .own_data import rationale_source as own_rationale_source


def run_dir(args: ReproduceArguments, task: str, method: str, seed: int) -> Path:
    return Path(args.output_dir) / task / f"{method}-s{seed}"


def training_arguments(args: ReproduceArguments, task: str, method: str, seed: int, rationales: str | None):
    from ..training.run import DHRDTrainingArguments

    rules = METHOD_RULES[method]
    settings = dict(
        output_dir=str(run_dir(args, task, method, seed)),
        task=task,
        data_dir=args.data_dir,
        backbone=args.backbone,
        method=rules.training_method,
        alpha=rules.training_alpha(args.alpha),
        beta=rules.training_beta(args.beta),
        rationales=rationales,
        rationale_mode=rules.rationale_mode,
        keep_reasoning_head=rules.keep_reasoning_head,
        num_train_epochs=float(args.task_epochs(task)),
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        seed=seed,
        subset_seed=args.subset_seed,
        max_train_examples=args.train_cap(task),
        max_eval_examples=args.eval_cap(task),
        resume=not args.restart,
    )
    settings.update(training_settings(args, task))  # an own-data task's files and columns
    settings.update(args.train)
    return DHRDTrainingArguments(**settings)


def _same_run(train_args, output: Path) -> bool:
    """A finished run in ``output`` is reused only when it was made with these settings."""
    from ..training.resume import refuse_other_settings
    from ..training.run import changed_settings

    saved = output / "train_args.json"
    if not saved.is_file():
        return False
    changed = changed_settings(json.loads(saved.read_text()), train_args, ("max_eval_examples", "test_file"))
    refuse_other_settings(output, "a finished run", changed, "run it again")
    return True


def train_cell(train_args) -> dict:
    """Train (or resume) one run; a finished run with the same settings is read back, not trained again."""
    from ..training.run import train

    output = Path(train_args.output_dir)
    metrics_file = output / "metrics.json"
    if train_args.resume and metrics_file.is_file() and _same_run(train_args, output):
        return json.loads(metrics_file.read_text())
    if metrics_file.is_file():
        metrics_file.unlink()  # --restart: the old result must not outlive its run
    return train(train_args).metrics


def _cot_examples(args: ReproduceArguments, task: str):
    """The validation examples CoT is scored on: the first ``cot_cap`` of the (capped) evaluation subset."""
    from ..data.selection import sample_examples
    from ..inference.evaluation import first_examples

    return lambda rows: first_examples(sample_examples(rows, args.eval_cap(task), args.subset_seed), args.cot_cap(task))


def cot_cell(args: ReproduceArguments, task: str, method: str, seed: int, rationales: str | None) -> dict:
    """Decode CoT on the evaluation examples and score its answers (parsed, else chosen by likelihood) with the
    task's official metric. ``cot``: the fine-tuned model of this seed continues ``x + "Reasoning:"``;
    ``cot-zero-shot``: the backbone, prompted to reason (greedy decoding does not depend on the seed, so it is
    one cell per task)."""
    from ..cot.baseline import TransformersEngine, decode_and_score
    from ..cot.setup import cot_inputs, decode_settings

    target = run_dir(args, task, method, seed) / "cot-eval.json"
    if target.is_file() and not args.restart:
        return json.loads(target.read_text())
    start = time.perf_counter()
    model = run_dir(args, task, method, seed) if METHOD_RULES[method].cot == "fine-tuned" else args.backbone
    own = own_task(args, task)
    if own is None:
        inputs = cot_inputs(method, task, model, args.data_dir, _cot_examples(args, task))
        settings = decode_settings((args.cot_setting,), task, inputs.tokenizer, rationales, None)[0]
    else:  # only zero-shot CoT decodes own data (``MethodRules.skip_reason``)
        inputs, settings = own.zero_shot_setup(args, model, rationales)
    engine = TransformersEngine(inputs.lm, inputs.tokenizer)
    run = decode_and_score(
        task, engine, inputs.queries, inputs.gold, settings, tokenizer=inputs.tokenizer, batch_size=8, seed=seed
    )
    scored = run.summary()
    result = {
        "score": scored["score"],
        "tasks": {task: scored["metrics"]},
        "setting": settings.describe(),
        "parsed_examples": scored["parsed_examples"],
        "likelihood_examples": scored["likelihood_examples"],
        "unparsed_rows": scored["unparsed_rows"],
        "ambiguous_examples": scored["ambiguous_examples"],
        "eval_examples": len(inputs.gold),
        "seconds": round(time.perf_counter() - start, 1),
        "sample_output": scored["sample_output"],
    }
    write_json_atomic(target, result)
    return result


def qps_cell(args: ReproduceArguments, task: str, rationales: str | None) -> dict:
    """Throughput of every method, side by side in one benchmark run, on the first seed's models."""
    from ..benchmarks.benchmark import BenchmarkArguments, benchmark

    target = Path(args.output_dir) / task / "qps.json"
    if target.is_file() and not args.restart:
        return json.loads(target.read_text())
    seed = args.seeds[0]
    trained = {m: str(run_dir(args, task, m, seed)) for m in TRAINED_METHODS if m in args.methods}
    zero_shot = TASKS[task].zero_shot_cot and any(METHOD_RULES[m].cot == "zero-shot" for m in args.methods)
    result = benchmark(
        BenchmarkArguments(
            task=task,
            data_dir=args.data_dir,
            max_examples=args.qps_examples,
            pooled=trained.get("pooled"),
            dhrd=trained.get("dhrd"),
            cot=trained.get("cot"),
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
    # the benchmark names its systems as this runner names its methods
    kept = ("examples_per_s", "latency_p50_ms", "examples", "score")
    qps = {r["system"]: {k: r[k] for k in kept} for r in result.rows}
    data = {
        "qps": qps,
        "batch_size": args.qps_batch_size,
        "examples": result.inputs.get("examples"),
        "setting": result.cot_settings,
        "provenance": result.provenance,
        "seconds": result.seconds,
    }
    write_json_atomic(target, data)
    return data


def existing_rationales(args: ReproduceArguments, task: str) -> str | None:
    """The rationale folder a task's cells were trained with, without asking any teacher: the given folder or
    the reference set where it has the task, else the teacher's cache where one was made."""
    from ..data.rationales import default_rationale_dir

    if (own := own_task(args, task)) is not None:
        return own_existing_rationales(args, own)
    base = Path(args.rationales) if args.rationales else default_rationale_dir()
    if base is not None and (base / TASKS[task].folder / "train.jsonl").is_file():
        return str(base)
    if args.teacher:
        from ..teacher.teachers import teacher_slug

        cache = Path(args.output_dir) / "rationales" / teacher_slug(args.teacher)
        if (cache / TASKS[task].folder / "train.jsonl").is_file():
            return str(cache)
    return None


def rationale_source(args: ReproduceArguments, task: str, progress: bool = True) -> tuple[str | None, dict]:
    """Where ``task``'s rationales come from: the given folder or the shared reference set when it has the
    task, else the teacher's cache (made now, resumably, for the capped training subset only)."""
    from ..data.rationales import default_rationale_dir

    if (own := own_task(args, task)) is not None:
        return own_rationale_source(args, own, progress)
    base = Path(args.rationales) if args.rationales else default_rationale_dir()
    folder = TASKS[task].folder
    if base is not None and (base / folder / "train.jsonl").is_file():
        return str(base), {"source": str(base / folder / "train.jsonl")}
    if not args.teacher:
        raise DHRDInputError(
            f"no rationales for {task} in {base or 'the shared reference set'}: give a teacher "
            "(--teacher, with --teacher-base-url for a server) or --rationales with a <Task>/train.jsonl"
        )
    from ..teacher.teachers import make_rationales, teacher_slug

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
    return str(output), teacher_record(path, summary)


# an own-data task's cell, beside the SuperGLUE one (``qps_cell``): it reads the run folders ``run_dir`` names
def own_data_qps_cell(args: ReproduceArguments, task: str, rationales: str | None = None) -> dict:
    """Throughput of an own-data task's classifiers (the first seed's) and of zero-shot CoT where it is a method,
    each timed on the first examples of its scored split as ``dhrd benchmark`` times a SuperGLUE task's."""
    from ..benchmarks.timing import time_classifier
    from ..data.task_metrics import evaluate_rows
    from ..inference.evaluation import first_examples
    from ..modeling import load_classifier
    from ..provenance import provenance
    from ..runtime import bf16_supported

    target = Path(args.output_dir) / task / "qps.json"
    if target.is_file() and not args.restart:
        return json.loads(target.read_text())
    start = time.perf_counter()
    examples = first_examples(own_task(args, task).scored_examples(args), args.qps_examples)
    bf16 = args.train.get("bf16")
    bf16 = bf16_supported() if bf16 is None else bool(bf16)  # as the cells trained
    qps = {}
    for method in (m for m in args.methods if METHOD_RULES[m].classifier):
        model, tokenizer = load_classifier(run_dir(args, task, method, args.seeds[0]))
        timed = time_classifier(model, tokenizer, examples, args.qps_batch_size, args.qps_repeats, bf16=bf16)
        score = evaluate_rows(examples, timed.pop("probs"), "native")["score"]
        qps[method] = {k: timed[k] for k in ("examples_per_s", "latency_p50_ms", "examples")} | {"score": score}
        del model
    if any(METHOD_RULES[m].cot == "zero-shot" for m in args.methods):
        qps["cot-zero-shot"] = _own_zero_shot_qps(args, own_task(args, task), examples, rationales, bf16)
    data = {
        "qps": qps,
        "batch_size": args.qps_batch_size,
        "examples": len(examples),
        "split": own_task(args, task).scored_split,
        "provenance": provenance(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(target, data)
    return data


def _own_zero_shot_qps(args: ReproduceArguments, own: OwnDataTask, examples: list, rationales: str | None, bf16: bool):
    """Zero-shot CoT timed as ``dhrd benchmark`` times it (a warm-up, then ``qps_repeats`` passes of decoding and
    likelihood answers), on the classifiers' timed examples."""
    from ..benchmarks.benchmark import cot_timing
    from ..cot.baseline import TransformersEngine, decode_and_score

    inputs, settings = own.zero_shot_setup(args, args.backbone, rationales, examples)
    engine = TransformersEngine(inputs.lm, inputs.tokenizer, bf16)
    run = decode_and_score(
        own.name, engine, inputs.queries, inputs.gold, settings, tokenizer=inputs.tokenizer,
        batch_size=args.qps_batch_size, seed=args.seeds[0], repeats=args.qps_repeats, warm_up=True, progress=False,
    )  # fmt: skip
    timed = cot_timing(run)
    return {k: timed[k] for k in ("examples_per_s", "latency_p50_ms", "examples")} | {"score": run.metrics["score"]}
