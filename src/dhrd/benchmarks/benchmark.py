"""``dhrd benchmark``: accuracy and throughput of the pooled classifier, the DHRD student and CoT decoding,
measured in one run, on one machine, on the same validation inputs.

For every system and batch size: a warm-up, then ``repeats`` full passes over the inputs; examples/s from the
fastest pass (and the median pass), per-request latency p50/p95 (a request is one model input; in a batch
every request waits for the whole batch). The same run measures a large bf16 and fp32 GEMM, the machine's
practical matmul limit, and reports the classifier's achieved FLOP/s as a fraction of it; and it measures
each switch of the classifier's fast inference path by turning it off (or on, for ``torch.compile``).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..cot.baseline import CoTScore, LlamaCppEngine, TransformersEngine, VLLMEngine, decode_and_score
from ..cot.setup import FINETUNED, ZERO_SHOT, CoTInputs, cot_inputs, decode_settings
from ..data.examples import Example
from ..data.task_metrics import evaluate_rows
from ..errors import DHRDInputError
from ..inference.evaluation import examples_for_model, first_examples
from ..modeling import (
    DEFAULT_BACKBONE_HUB,
    SPEC_KEY,
    backbone_source,
    default_backbone,
    find_model_dir,
    load_classifier,
    resolve_backbone,
    run_settings,
    split_backbone,
)
from ..options.command_args import COT_ENGINES, COT_SETTINGS, SYSTEMS, BenchmarkArguments
from ..provenance import machine_text, provenance, versions_text
from ..runtime import bf16_supported, plot_colour, save_figure_atomic, write_json_atomic, write_text_atomic
from ..stats import latency_percentiles
from .startup_benchmark import cli_startup, startup_markdown
from .timing import fast_path_switches, forward_flops, gemm_peak, pass_stats, time_classifier

logger = logging.getLogger(__name__)

LEGACY_SYSTEMS = {"cot-finetuned": "cot"}  # what results written before the names were one called them
ENGINES = COT_ENGINES


# ------------------------------------------------------------------------------------------------ CoT
def cot_timing(run: CoTScore) -> dict:
    """examples/s of a CoT system's passes; latency percentiles and new tokens of its last pass's decodes."""
    decoded = run.decoded
    stats = pass_stats(run.pass_seconds, len(run.predictions.labels), len(decoded))  # one label per example
    mean_new_tokens = round(statistics.fmean(d.new_tokens for d in decoded), 1)
    return {**stats, **latency_percentiles([d.seconds for d in decoded]), "mean_new_tokens": mean_new_tokens}


def _cot_settings(args: BenchmarkArguments, tokenizer) -> list:
    return decode_settings(args.cot_settings, args.task, tokenizer, args.rationales, args.greedy_max_new_tokens)


def _cot_examples(args: BenchmarkArguments, groups: list[str] | None):
    """The benchmark's CoT examples: those the classifiers were measured on, else the first ``max_examples``."""
    return lambda rows: _keep_groups(first_examples(rows, args.max_examples), groups)


# -------------------------------------------------------------------------------------------- the run
@dataclass
class BenchmarkResult:
    provenance: dict  # provenance.provenance(): versions, git commit, machine, command line
    gemm: list[dict]
    inputs: dict  # the task, split, examples and dtype ("bf16 autocast" or "fp32")
    rows: list[dict] = field(default_factory=list)
    fast_path: list[dict] = field(default_factory=list)
    ratios: list[dict] = field(default_factory=list)
    engines: dict = field(default_factory=dict)  # --onnx: torch vs onnxruntime rows (engine_benchmark)
    startup: dict = field(default_factory=dict)  # the command line's help, version and errors (startup_benchmark)
    cot_settings: dict = field(default_factory=dict)
    seconds: float = 0.0
    arguments: dict = field(default_factory=dict)


def read_result(path: str | Path) -> BenchmarkResult:
    """A benchmark's JSON read back (to render its table again). Results written when the benchmark called the
    CoT fine-tuned system ``cot-finetuned`` (and its argument ``cot_finetuned``) read with today's name."""
    data = json.loads(Path(path).read_text())
    for row in data.get("rows", []):
        row["system"] = LEGACY_SYSTEMS.get(row["system"], row["system"])
    for ratio in data.get("ratios", []):
        system, space, rest = ratio["dhrd_over"].partition(" ")  # "cot-finetuned [transformers, greedy]"
        ratio["dhrd_over"] = LEGACY_SYSTEMS.get(system, system) + space + rest
    arguments = data.get("arguments") or {}
    if "cot_finetuned" in arguments:
        arguments["cot"] = arguments.pop("cot_finetuned")
    if "machine" in data:  # written before the provenance record: its machine and command moved into one
        _legacy_provenance(data)
    return BenchmarkResult(**data)


def _legacy_provenance(data: dict) -> None:
    """A result's ``machine`` and ``command`` of before as today's ``provenance`` and ``inputs['dtype']``."""
    old = data.pop("machine")
    data["inputs"]["dtype"] = old.get("dtype")
    machine = {key: old.get(key) for key in ("cpu", "cpu_count", "torch_threads")}
    machine.update(bf16_supported=None, gpu=None if old.get("device") == "cpu" else old.get("device"))
    versions = old.get("versions", {})  # python stays out: the committed tables render as they were written
    data["provenance"] = {"versions": versions, "git_commit": None, "machine": machine, "command": data.pop("command")}


def benchmark(args: BenchmarkArguments) -> BenchmarkResult:
    """Run every requested system at every batch size; write JSON, a markdown table and a PNG chart."""
    args.validate()
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    bf16 = bf16_supported() if args.bf16 is None else args.bf16
    gemm = [gemm_peak(torch.bfloat16), gemm_peak(torch.float32)] if bf16 else [gemm_peak(torch.float32)]
    peak = gemm[0]["tflops"] * 1e12
    dtype = "bf16 autocast" if bf16 else "fp32"
    result = BenchmarkResult(provenance(), gemm, {"task": args.task, "split": "validation", "dtype": dtype})
    result.arguments = asdict(args)
    if args.startup:
        result.startup = cli_startup(args.repeats)
    out = Path(args.output)

    def save():
        result.seconds = round(time.perf_counter() - began, 1)
        result.ratios = headline_ratios(result.rows)
        write_json_atomic(out.with_suffix(".json"), asdict(result))  # after every row: a kill keeps the rest

    groups = _bench_classifiers(args, result, bf16, peak, save)
    if args.cot:
        groups = _bench_cot(args, result, bf16, out, save, groups)
    if args.zero_shot:
        _bench_cot_zero_shot(args, result, bf16, save, groups)
    save()
    write_markdown(result, out.with_suffix(".md"))
    plot(result, out.with_suffix(".png"))
    return result


def _bench_classifiers(args: BenchmarkArguments, result: BenchmarkResult, bf16: bool, peak: float, save):
    """The pooled and DHRD classifiers at every batch size, and the inference-path switches on the first.
    Returns the original examples measured (every later system runs on the same ones)."""
    groups = None
    for system, path in (("pooled", args.pooled), ("dhrd", args.dhrd)):
        if not path:
            continue
        model, tokenizer = load_classifier(path)
        examples, input_format = examples_for_model(model, args.task, "validation", args.data_dir)
        examples = first_examples(examples, args.max_examples)
        groups = groups or list(dict.fromkeys(e.group for e in examples))
        lengths = [len(i) for i in tokenizer([e.text for e in examples])["input_ids"]]
        result.inputs.update(
            examples=len(groups), classifier_rows=len(examples), mean_input_tokens=round(float(np.mean(lengths)), 1)
        )
        flops = forward_flops(model, lengths)
        for batch_size in args.batch_sizes:
            timed = time_classifier(model, tokenizer, examples, batch_size, args.repeats, bf16=bf16)
            metrics = evaluate_rows(examples, timed.pop("probs"), input_format)["tasks"][args.task]
            achieved = flops / timed["seconds_min"]
            row = {"system": system, "engine": "dhrd (torch)", "setting": "forward pass", "batch_size": batch_size}
            row.update(timed, score=metrics["score"], metrics=metrics, model=str(path))
            row.update(achieved_tflops=round(achieved / 1e12, 4), fraction_of_gemm_peak=round(achieved / peak, 4))
            result.rows.append(row)
            save()
        if args.onnx:
            from .engine_benchmark import benchmark_engines

            timing = dict(batch_sizes=args.batch_sizes, repeats=args.repeats, bf16=bf16)
            benchmark_engines(
                result.engines, system, path, model, tokenizer, examples, input_format, args.task, **timing
            )
            save()
        if args.fast_path and not result.fast_path:
            result.fast_path = fast_path_switches(
                model, tokenizer, examples, max(args.batch_sizes), args.repeats, bf16, args.compile
            )
            save()
    return groups


def _bench_cot(args: BenchmarkArguments, result: BenchmarkResult, bf16: bool, out: Path, save, groups):
    """The CoT fine-tuned model (alpha=1, beta=0) decoding with its LM head, on the classifier's rows."""
    inputs = cot_inputs(FINETUNED, args.task, args.cot, args.data_dir, _cot_examples(args, groups))
    settings = _cot_settings(args, inputs.tokenizer)
    if _vllm_usable(args):  # vLLM reads a model directory: the fine-tuned LM is saved as one
        lm_dir = out.with_name(f"{out.name}-cot-lm")
        inputs.lm.save_pretrained(lm_dir)
        inputs.tokenizer.save_pretrained(lm_dir)
        _run_cot(result, inputs, VLLMEngine(lm_dir, args.seed), settings, args, save)
    if "transformers" in args.engines:
        _run_cot(result, inputs, TransformersEngine(inputs.lm, inputs.tokenizer, bf16), settings, args, save)
    return groups or inputs.groups


def _bench_cot_zero_shot(args: BenchmarkArguments, result: BenchmarkResult, bf16: bool, save, groups) -> None:
    """The untouched backbone prompted to reason, on every requested engine."""
    backbone = args.backbone or _classifier_backbone(args) or default_backbone()
    inputs = cot_inputs(ZERO_SHOT, args.task, backbone, args.data_dir, _cot_examples(args, groups))
    settings = _cot_settings(args, inputs.tokenizer)
    result.inputs["examples"] = len(inputs.groups)
    if "transformers" in args.engines:
        engine = TransformersEngine(inputs.lm, inputs.tokenizer, bf16)
        _run_cot(result, inputs, engine, settings, args, save)
    inputs.lm = engine = None  # the other engines load their own weights: free these first
    if _vllm_usable(args):
        engine = VLLMEngine(resolve_backbone(backbone), args.seed)
        _run_cot(result, inputs, engine, settings, args, save)
    if "llama.cpp" in args.engines:
        engine = _llama_cpp_engine(backbone, args.threads)
        if engine is not None:
            _run_cot(result, inputs, engine, settings, args, save)


def _llama_cpp_engine(backbone: str, threads: int | None):
    gguf = _gguf_of(backbone)
    if gguf is None:
        logger.warning("llama.cpp engine skipped: the backbone %s is not a GGUF file", backbone)
        return None
    try:
        return LlamaCppEngine(gguf, threads)
    except DHRDInputError as error:
        logger.warning("llama.cpp engine skipped: %s", error)
        return None


def _run_cot(result, inputs: CoTInputs, engine, settings, args, save) -> None:
    for setting in settings:
        result.cot_settings[setting.name] = setting.describe()
        for batch_size in args.batch_sizes:
            if engine.max_batch_size and batch_size > engine.max_batch_size:
                continue
            run = decode_and_score(
                args.task,
                engine,
                inputs.queries,
                inputs.gold,
                setting,
                tokenizer=inputs.tokenizer,
                batch_size=batch_size,
                seed=args.seed,
                repeats=args.cot_repeats,
                warm_up=True,
                progress=args.progress,
            )
            row = {"system": inputs.system, "engine": engine.name, "setting": setting.name, "batch_size": batch_size}
            row.update(cot_timing(run), **run.summary())
            result.rows.append(row)
            save()


def _vllm_usable(args: BenchmarkArguments) -> bool:
    """vLLM where it was asked for, is installed and has a GPU; otherwise a warning (it is never required)."""
    if "vllm" not in args.engines:
        return False
    try:
        import vllm  # noqa: F401
    except ImportError:
        logger.warning("vllm engine skipped: vLLM is not installed")
        return False
    if not torch.cuda.is_available():
        logger.warning("vllm engine skipped: no GPU")
        return False
    return True


def _keep_groups(examples: list[Example], groups: list[str] | None) -> list[Example]:
    return examples if groups is None else [e for e in examples if e.group in set(groups)]


def _classifier_backbone(args: BenchmarkArguments) -> str | None:
    """The backbone the first given model was trained from: as its run recorded it (a local path), else as its
    config names it (a hub id or a name). None: the default backbone (the shared SmolLM2, else the hub's)."""
    for path in (args.pooled, args.dhrd, args.cot):
        if path:
            model_dir = find_model_dir(path)
            run = run_settings(model_dir)
            if run:
                return backbone_source(run["backbone"], run.get("gguf_file")) if run.get("backbone") else None
            config = json.loads((model_dir / "config.json").read_text())
            name = (config.get(SPEC_KEY) or {}).get("backbone")
            if name and name not in ("default", DEFAULT_BACKBONE_HUB):
                return name
    return None


def _gguf_of(backbone: str) -> str | None:
    directory, gguf_file = split_backbone(backbone)
    return str(Path(directory) / gguf_file) if gguf_file else None


def headline_ratios(rows: list[dict]) -> list[dict]:
    """DHRD/pooled and DHRD/CoT examples/s at each batch size (CoT rows of every engine and setting)."""
    ratios = []
    for dhrd in (r for r in rows if r["system"] == "dhrd"):
        b = dhrd["batch_size"]
        for other in rows:
            if other["system"] != "dhrd" and other["batch_size"] == b:
                label = (
                    other["system"]
                    if other["system"] == "pooled"
                    else f"{other['system']} [{other['engine']}, {other['setting']}]"
                )
                ratios.append(
                    {
                        "batch_size": b,
                        "dhrd_over": label,
                        "ratio": round(dhrd["examples_per_s"] / other["examples_per_s"], 2),
                    }
                )
    return ratios


# --------------------------------------------------------------------------------------------- output
COLUMNS = (
    "system",
    "engine",
    "setting",
    "batch",
    "examples/s (best)",
    "examples/s (median)",
    "p50 ms",
    "p95 ms",
    "score",
    "GEMM peak %",
    "notes",
)


def table_rows(result: BenchmarkResult) -> list[list[str]]:
    rows = []
    for r in result.rows:
        notes = []
        if "mean_new_tokens" in r:
            notes.append(f"{r['mean_new_tokens']} new tokens/request")
        notes += cot_answer_notes(r)
        peak = r.get("fraction_of_gemm_peak")
        rows.append(
            [
                r["system"],
                r["engine"],
                r["setting"],
                str(r["batch_size"]),
                f"{r['examples_per_s']:.3f}",
                f"{r['examples_per_s_median']:.3f}",
                f"{r['latency_p50_ms']:.1f}",
                f"{r['latency_p95_ms']:.1f}",
                f"{r['score']:.2f}",
                f"{100 * peak:.1f}" if peak is not None else "–",
                "; ".join(notes),
            ]
        )
    return rows


def cot_answer_notes(row: dict) -> list[str]:
    """How a CoT row's examples were answered: parsed from the text or by likelihood. A row written before
    answers were chosen by likelihood counts its unparsed rows and ambiguous examples, both scored wrong."""
    if "likelihood_examples" in row:
        return [f"answers: parsed {row['parsed_examples']}, by likelihood {row['likelihood_examples']}"]
    notes = [f"{row['unparsed_rows']} unparsed"] if row.get("unparsed_rows") else []
    return notes + ([f"{row['ambiguous_examples']} ambiguous"] if row.get("ambiguous_examples") else [])


def write_markdown(result: BenchmarkResult, path: Path) -> Path:
    p, command = result.provenance, result.provenance.get("command")
    lines = [
        f"# dhrd benchmark: {result.inputs['task']} validation, {result.inputs.get('examples')} examples",
        "",
        f"Command: `{command}`" if command else "Run from the Python API (arguments in the JSON).",
        "",
        f"Machine: {machine_text(p)}, {result.inputs.get('dtype')}; versions {versions_text(p)}.",
        "GEMM peak: " + ", ".join(f"{g['dtype']} {g['tflops']:.3f} TFLOP/s (n={g['n']})" for g in result.gemm) + ".",
        "CoT settings: " + "; ".join(f"{k}: {v}" for k, v in result.cot_settings.items()) + "."
        if result.cot_settings
        else "No CoT system in this run.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row) + " |" for row in table_rows(result)),
        "",
        "| batch | DHRD examples/s over | ratio |",
        "|---|---|---|",
        *(f"| {r['batch_size']} | {r['dhrd_over']} | {r['ratio']:.2f}x |" for r in result.ratios),
    ]
    if result.fast_path:
        lines += ["", "| classifier inference path | examples/s | ratio to default |", "|---|---|---|"]
        lines += [
            f"| {f['variant']} | {f['examples_per_s'] or 'unavailable'} | {f['ratio_to_default'] or '–'} |"
            for f in result.fast_path
        ]
    from .engine_benchmark import engine_markdown

    lines += engine_markdown(result.engines)
    lines += startup_markdown(result.startup)
    lines += ["", f"Wall time of the whole benchmark: {result.seconds:.0f} s.", ""]
    return write_text_atomic(path, "\n".join(lines))


def plot(result: BenchmarkResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows
    labels = [f"{r['system']} [{r['engine']}, {r['setting']}] b={r['batch_size']}" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    ax.barh(labels, [r["examples_per_s"] for r in rows], color=[plot_colour(r["system"]) for r in rows])
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("examples per second (log scale, best of repeats)")
    cpu = result.provenance["machine"]["cpu"]
    ax.set_title(f"{result.inputs['task']} validation, {result.inputs.get('examples')} examples: {cpu}")
    for k, r in enumerate(rows):
        ax.text(
            r["examples_per_s"], k, f" {r['examples_per_s']:.3g}/s, score {r['score']:.1f}", va="center", fontsize=8
        )
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=120)


__all__ = [
    "COT_SETTINGS",
    "ENGINES",
    "SYSTEMS",
    "BenchmarkArguments",
    "BenchmarkResult",
    "benchmark",
    "headline_ratios",
    "read_result",
]
