"""``dhrd benchmark --onnx``: one classifier on each inference engine, in one run, on the same inputs.

torch bf16 autocast (where the hardware has it) and fp32, onnxruntime fp32 and int8 (an export made for the
run): examples/s (best and median pass), the score, and the largest absolute probability difference from
torch fp32 on the same inputs. The engines take turns, one pass each per round, so that other load on the
machine or a drifting clock favours none of them; the load average before and after is recorded, and the
ratios between engines (measured side by side) are what carries over to another machine, not the absolute
numbers.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..data.examples import Example
from ..data.task_metrics import evaluate_rows
from ..inference.evaluation import predict_proba
from ..inference.onnx_engine import load_onnx_classifier
from ..inference.onnx_export import export_onnx
from ..inference.onnx_graph import INT8_FILE
from .timing import time_classifier

ENGINE_COLUMNS = (
    "system",
    "engine",
    "precision",
    "batch",
    "examples/s (best)",
    "examples/s (median)",
    "p50 ms",
    "p95 ms",
    "score",
    "largest prob. difference vs torch fp32",
    "same label as torch fp32",
    "x torch default",
)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _variants(model, export_dir: Path, bf16: bool) -> list[tuple]:
    """(engine, precision, model, switches) for each engine measured (they share the torch model's tokenizer)."""
    onnx_fp32, _ = load_onnx_classifier(export_dir)
    onnx_int8, _ = load_onnx_classifier(export_dir / INT8_FILE)
    variants = [("torch", "bf16 autocast", model, {"bf16": True})] if bf16 else []
    variants += [
        ("torch", "fp32", model, {"bf16": False}),
        ("onnxruntime", "fp32", onnx_fp32, {"bf16": False}),
        ("onnxruntime", "int8", onnx_int8, {"bf16": False}),
    ]
    return variants


def benchmark_engines(
    engines: dict,
    system: str,
    model_path: str,
    model,
    tokenizer,
    examples: list[Example],
    input_format: str,
    task: str,
    batch_sizes: tuple[int, ...],
    repeats: int,
    bf16: bool,
) -> dict:
    """Add one classifier's rows to ``engines["rows"]`` and how its run went (export time, load average) to
    ``engines["runs"]``. ``model`` and ``tokenizer`` are the torch classifier loaded from ``model_path``."""
    started = time.perf_counter()
    load_before = _load_average()
    with tempfile.TemporaryDirectory(prefix="dhrd-onnx-") as tmp:
        # held to no bar: the int8 file is timed and compared below whatever its export's check said
        export = export_onnx(
            model_path, Path(tmp) / "export", quantize="int8", int8_min_agreement=0, int8_max_accuracy_change=None
        )
        variants = _variants(model, Path(tmp) / "export", bf16)
        texts = [e.text for e in examples]
        reference = predict_proba(model, tokenizer, texts, max(batch_sizes), bf16=False, progress=False)
        rows = []
        for batch_size in batch_sizes:
            passes: list[list[dict]] = [[] for _ in variants]
            for _ in range(repeats):
                for k, (_, _, model, switches) in enumerate(variants):
                    passes[k].append(time_classifier(model, tokenizer, examples, batch_size, 1, **switches))
            rows += _rows(system, variants, passes, reference, examples, input_format, task, batch_size)
    engines.setdefault("rows", []).extend(rows)
    run = {
        "system": system,
        "export_seconds": export.seconds,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "cpu_count": os.cpu_count(),
    }
    engines.setdefault("runs", []).append(run)
    return engines


def _rows(system, variants, passes, reference, examples, input_format, task, batch_size) -> list[dict]:
    rows = []
    for (engine, precision, _, _), timed in zip(variants, passes):
        speeds = [t["examples_per_s"] for t in timed]
        probs = timed[-1]["probs"]
        metrics = evaluate_rows(examples, probs, input_format)["tasks"][task]
        rows.append(
            {
                "system": system,
                "engine": engine,
                "precision": precision,
                "batch_size": batch_size,
                "examples_per_s": max(speeds),
                "examples_per_s_median": round(statistics.median(speeds), 3),
                "latency_p50_ms": timed[-1]["latency_p50_ms"],
                "latency_p95_ms": timed[-1]["latency_p95_ms"],
                "score": metrics["score"],
                "max_abs_prob_diff": round(float(np.abs(probs - reference).max()), 6),
                "same_label": round(float(np.mean(probs.argmax(-1) == reference.argmax(-1))), 4),
            }
        )
    default = rows[0]["examples_per_s"]  # torch as `dhrd predict` runs it by default
    for row in rows:
        row["ratio_to_torch_default"] = round(row["examples_per_s"] / default, 3)
    return rows


def fastest(rows: list[dict]) -> list[dict]:
    """The fastest engine at each system and batch size."""
    best: dict[tuple, dict] = {}
    for row in rows:
        key = (row["system"], row["batch_size"])
        if key not in best or row["examples_per_s"] > best[key]["examples_per_s"]:
            best[key] = row
    return list(best.values())


def engine_markdown(engines: dict) -> list[str]:
    """The engines section of the benchmark's markdown (nothing when the run had no --onnx)."""
    rows = engines.get("rows") or []
    if not rows:
        return []
    lines = [
        "",
        "## Inference engines",
        "",
        "| " + " | ".join(ENGINE_COLUMNS) + " |",
        "|" + "---|" * len(ENGINE_COLUMNS),
    ]
    for r in rows:
        cells = [r["system"], r["engine"], r["precision"], str(r["batch_size"]), f"{r['examples_per_s']:.3f}"]
        cells += [f"{r['examples_per_s_median']:.3f}", f"{r['latency_p50_ms']:.1f}", f"{r['latency_p95_ms']:.1f}"]
        diff = f"{r['max_abs_prob_diff']:.2g}" if r["max_abs_prob_diff"] else "< 1e-6"  # rounded to 6 decimals
        cells += [f"{r['score']:.2f}", diff, f"{100 * r['same_label']:.1f}%"]
        cells.append(f"{r['ratio_to_torch_default']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for r in fastest(rows):
        lines.append(
            f"Fastest for {r['system']} at batch {r['batch_size']}: {r['engine']} {r['precision']} "
            f"({r['examples_per_s']:.2f} examples/s, {r['ratio_to_torch_default']:.2f}x torch's default)."
        )
    for run in engines.get("runs", []):
        lines.append(
            f"Timed beside other load: 1/5/15-minute load average {run['load_average_before']} before and "
            f"{run['load_average_after']} after, on {run['cpu_count']} CPUs. The engines took turns, one pass each "
            "per round, so their ratios come from one run under the same load; the absolute examples/s do not "
            f"carry over. Export (fp32 + int8) took {run['export_seconds']:.0f} s."
        )
    return lines


__all__ = ["ENGINE_COLUMNS", "benchmark_engines", "engine_markdown", "fastest"]
