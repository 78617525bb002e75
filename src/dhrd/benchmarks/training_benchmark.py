"""``dhrd benchmark --train``: training throughput of the pooled and the DHRD step, side by side in one run.

Every cell (a variant of the training settings x a method) trains one epoch over the same seeded sample of
training examples through the real training path (``training.prepare_run``: the same data, model, LoRA and
DHRDTrainer as ``dhrd train``), with no evaluation and no checkpoints. A step clock (a Trainer callback) and
a counting collator give, per cell: seconds per step, real (non-pad) tokens/s, the padding share, the LM
targets of the reasoning head, and useful FLOP/s as a fraction of the measured bf16 GEMM peak. DHRD's time
over pooled is set beside its token ratio, so its overhead can be read against the extra work it does.

The first cell is run twice and its first run discarded (thread pools, allocator, lazy imports).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..data.inputs import ClassificationCollator
from ..data.lengths import SUPERGLUE_MAX_LENGTH
from ..errors import DHRDInputError
from ..memory import bound_process_memory, release_memory, reset_peak, rss_gb
from ..provenance import machine_text, provenance, versions_text
from ..runtime import bf16_supported, save_figure_atomic, write_json_atomic, write_text_atomic
from .timing import gemm_peak

logger = logging.getLogger(__name__)

# What each variant changes from the training defaults (``DHRDTrainingArguments``). "default" is what
# ``dhrd train`` does; "before" is what it did before this benchmark (random batches, SDPA attention, torch's
# dropout, the LM loss in one piece); the others turn one setting off, or try another.
VARIANTS: dict[str, dict] = {
    "default": {},
    "before": {"group_by_length": False, "attention": "sdpa", "bits_dropout": False, "chunked_lm_loss": False},
    "random batches": {"group_by_length": False},
    "SDPA attention": {"attention": "sdpa"},
    "torch dropout": {"bits_dropout": False},
    "one-piece LM loss": {"chunked_lm_loss": False},
    "rationale-only LM loss": {"lm_scope": "reasoning"},
    "batch 16": {"per_device_train_batch_size": 16},
    "batch 4": {"per_device_train_batch_size": 4},
    "full fine-tuning": {"lora": False, "learning_rate": 2e-5},
    "full + fused AdamW": {"lora": False, "learning_rate": 2e-5, "optim": "adamw_torch_fused"},
    "torch.compile": {"torch_compile": True},
    "no activation budget": {"activation_memory": 0},  # every layer's activations kept (before issue 25)
}
# settings that act on DHRD's loss only: a pooled step is the same with them on or off
DHRD_ONLY_SETTINGS = {"chunked_lm_loss", "lm_scope"}
DEFAULT_VARIANTS = (
    "default",
    "before",
    "random batches",
    "SDPA attention",
    "torch dropout",
    "one-piece LM loss",
    "batch 16",
    "full fine-tuning",
    "full + fused AdamW",
)


@dataclass
class TrainBenchmarkArguments:
    task: str = "rte"
    data_dir: str | None = None
    backbone: str | None = None
    rationales: str | None = None  # DHRD's rationales [default: the shared reference set]
    examples: int = 64  # training examples (a seeded sample), the same for every cell
    methods: tuple[str, ...] = ("pooled", "dhrd")
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    max_length: int = SUPERGLUE_MAX_LENGTH  # the SuperGLUE reproduce runs' (lengths.py)
    truncation: str = "left"
    seed: int = 1
    output: str = "results/benchmark-train"
    epoch_padding: bool = True  # also the padding share of a whole epoch over the full split (no training)
    extra: dict = field(default_factory=dict)  # any other DHRDTrainingArguments field, for every cell

    def validate(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise DHRDInputError(f"unknown training variant(s) {', '.join(unknown)}: choose from {', '.join(VARIANTS)}")
        bad = [m for m in self.methods if m not in ("pooled", "dhrd")]
        if bad:
            raise DHRDInputError(f"unknown method(s) {', '.join(bad)}: choose pooled or dhrd")
        if self.examples < 2:
            raise DHRDInputError("--train-examples must be at least 2")


class CountingCollator(ClassificationCollator):
    """The training collator, recording per batch: real tokens, padded tokens, reasoning-head targets."""

    def __init__(self, pad_token_id: int):
        super().__init__(pad_token_id)
        self.batches: list[dict] = []

    def __call__(self, features):
        batch = super().__call__(features)
        mask = batch["attention_mask"]
        targets = int((batch["lm_labels"][:, 1:] != -100).sum()) if "lm_labels" in batch else 0
        lengths = mask.sum(-1).tolist()
        self.batches.append(
            {"real": int(mask.sum()), "padded": int(mask.numel()), "targets": targets, "lengths": lengths}
        )
        return batch


class StepClock(TrainerCallback):
    """Wall time of every optimiser step (forward, backward, optimiser, scheduler)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def step_flops(
    model_config, body_weights: int, trainable_body: int, lengths: list[int], targets: int, vocab_trainable: bool
) -> float:
    """Useful FLOPs of one training step: per real token 2 per weight forward, 2 backward for the input
    gradients, and 2 for weight gradients of the weights that train; the attention scores and mix (4 n^2 d
    per layer forward, 3x with the backward); the reasoning head's vocabulary projection on its targets only
    (forward and input gradient, plus its weight gradient when the embeddings train). Padding is not useful."""
    config = model_config.text_config if hasattr(model_config, "text_config") else model_config
    layers, hidden, vocab = config.num_hidden_layers, config.hidden_size, config.vocab_size
    tokens = sum(lengths)
    dense = (4 * body_weights + 2 * trainable_body) * tokens
    attention = 3 * sum(4 * layers * hidden * n * n for n in lengths)
    lm_head = (4 + (2 if vocab_trainable else 0)) * vocab * hidden * targets
    return float(dense + attention + lm_head)


def _weights(model) -> tuple[int, int, bool]:
    """Non-embedding weights of the backbone and head, how many of them train, and whether the embedding
    matrix (the reasoning head, when tied) trains."""
    embeddings = model.get_input_embeddings().weight
    body = trainable = 0
    for parameter in model.parameters():
        if parameter is embeddings:
            continue
        body += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return body, trainable, embeddings.requires_grad


def work_dir(args: TrainBenchmarkArguments) -> Path:
    """Throwaway runs (no checkpoints) beside the output, removed at the end."""
    out = Path(args.output)
    return out.parent / f".{out.name}-runs"


def cell_arguments(args: TrainBenchmarkArguments, method: str, output_dir: Path, **changes):
    """The training arguments of one benchmark run: one epoch, no real validation, every cell on the same
    seeded examples; ``args.extra`` then ``changes`` (a variant's) override the defaults."""
    from ..training.training_args import DHRDTrainingArguments

    settings = {
        "task": args.task,
        "data_dir": args.data_dir,
        "backbone": args.backbone,
        "method": method,
        "rationales": args.rationales if method == "dhrd" else None,
        "max_eval_examples": 2,
        "subset_seed": args.seed,
        "seed": args.seed,
        "num_train_epochs": 1.0,
        "max_length": args.max_length,
        "truncation": args.truncation,
        "output_dir": str(output_dir),
        **args.extra,
        **changes,
    }
    return DHRDTrainingArguments(**settings)


def run_cell(args: TrainBenchmarkArguments, variant: str, method: str, runs: Path, peak: float) -> dict:
    from ..training.callbacks import MemoryCallback
    from ..training.trainer import prepare_run

    output_dir = runs / f"{method}-{variant.replace(' ', '_').replace(',', '')}"
    train_args = cell_arguments(args, method, output_dir, max_train_examples=args.examples, **VARIANTS[variant])
    clock = StepClock()
    reset_peak()  # this cell's peak
    run = prepare_run(
        train_args,
        callbacks=[clock],
        collator=CountingCollator(0),
        save_strategy="no",
        eval_strategy="no",
        load_best_model_at_end=False,
        logging_steps=10**6,
        disable_tqdm=True,
    )
    collator = run.trainer.data_collator
    collator.pad_token_id = run.tokenizer.pad_token_id
    model = run.trainer.model
    body, trainable, vocab_trainable = _weights(model)
    config, vocabulary_weights = model.config, model.get_input_embeddings().weight.numel()
    del model
    run.trainer.train()
    memory = next(c for c in run.trainer.callback_handler.callbacks if isinstance(c, MemoryCallback))
    record = memory.finish(run.trainer.activation_budget, train_args.activation_memory)
    release(run)
    record["rss_after_release"] = rss_gb()
    steps = len(clock.seconds)
    batches = collator.batches[-steps:] if steps else []
    seconds = sum(clock.seconds)
    real = sum(b["real"] for b in batches)
    padded = sum(b["padded"] for b in batches)
    targets = sum(b["targets"] for b in batches)
    flops = sum(step_flops(config, body, trainable, b["lengths"], b["targets"], vocab_trainable) for b in batches)
    return {
        "variant": variant,
        "method": method,
        "changes": VARIANTS[variant],
        "examples": len({e.group for e in run.train_rows}),
        "rows": len(run.train_rows),
        "steps": steps,
        "seconds": round(seconds, 3),
        "seconds_per_step_median": round(statistics.median(clock.seconds), 4) if steps else None,
        "real_tokens": real,
        "padded_tokens": padded,
        "reasoning_targets": targets,
        "padding_share": round(1 - real / padded, 4) if padded else None,
        "real_tokens_per_s": round(real / seconds, 2) if seconds else None,
        "rows_per_s": round(len(run.train_rows) / seconds, 3) if seconds else None,
        "useful_flops": flops,
        "useful_tflops": round(flops / seconds / 1e12, 4) if seconds else None,
        "fraction_of_peak": round(flops / seconds / 1e12 / peak, 4) if seconds and peak else None,
        "trainable_weights": trainable + (vocabulary_weights if vocab_trainable else 0),
        "memory": record,
    }


def epoch_padding(args: TrainBenchmarkArguments, method: str) -> dict:
    """Padding share of one epoch over the task's whole training split, as the Trainer batches it, with
    random batches and with length-grouped ones (collation only, no model step)."""
    from ..training.trainer import prepare_run

    shares = {}
    for grouped in (False, True):
        train_args = cell_arguments(args, method, work_dir(args) / "padding", group_by_length=grouped)
        run = prepare_run(train_args, save_strategy="no", eval_strategy="no", load_best_model_at_end=False)
        real = padded = 0
        for batch in run.trainer.get_train_dataloader():
            real += int(batch["attention_mask"].sum())
            padded += int(batch["attention_mask"].numel())
        shares["grouped" if grouped else "random"] = round(1 - real / padded, 4)
        shares["rows"], shares["real_tokens"] = len(run.train_rows), real
        release(run)
    return {"method": method, **shares}


def release(run) -> None:
    """Drop what a finished cell holds (model, optimiser, accelerator references): the next cell must run
    in the same memory as the first, or later cells are measured under memory pressure."""
    import gc

    run.trainer.accelerator.free_memory()
    run.trainer.model = run.trainer.model_wrapped = run.trainer.optimizer = run.trainer.lr_scheduler = None
    run.release()
    gc.collect()
    release_memory()


def dhrd_overheads(cells: list[dict]) -> list[dict]:
    """Per variant: DHRD's epoch time over pooled's, beside its real-token and useful-FLOP ratios."""
    by_key = {(c["variant"], c["method"]): c for c in cells}
    overheads = []
    for variant in dict.fromkeys(c["variant"] for c in cells):
        pooled, dhrd = by_key.get((variant, "pooled")), by_key.get((variant, "dhrd"))
        if not pooled or not dhrd or not pooled["seconds"]:
            continue
        overheads.append(
            {
                "variant": variant,
                "time_ratio": round(dhrd["seconds"] / pooled["seconds"], 3),
                "token_ratio": round(dhrd["real_tokens"] / pooled["real_tokens"], 3),
                "flop_ratio": round(dhrd["useful_flops"] / pooled["useful_flops"], 3),
            }
        )
    return overheads


def speedups(cells: list[dict]) -> list[dict]:
    """Each cell's epoch time against the 'before' cell of its method (what training did before)."""
    before = {c["method"]: c for c in cells if c["variant"] == "before"}
    found = []
    for cell in cells:
        reference = before.get(cell["method"])
        if reference and cell is not reference and cell["seconds"]:
            found.append(
                {
                    "variant": cell["variant"],
                    "method": cell["method"],
                    "speedup": round(reference["seconds"] / cell["seconds"], 3),
                }
            )
    return found


def benchmark_training(args: TrainBenchmarkArguments, progress: bool = True) -> dict:
    args.validate()
    bf16 = bf16_supported()
    bound_process_memory()  # as dhrd train does (dhrd.memory)
    out = Path(args.output)
    runs = work_dir(args)
    peak = gemm_peak(torch.bfloat16 if bf16 else torch.float32)
    result = {
        "provenance": provenance(),
        "gemm_peak": peak,
        "settings": {**{k: v for k, v in vars(args).items() if k != "output"}, "dtype": "bf16" if bf16 else "fp32"},
        "cells": [],
    }
    plan = [(v, m) for v in args.variants for m in args.methods]
    from tqdm.auto import tqdm

    if args.epoch_padding:
        result["epoch_padding"] = [epoch_padding(args, method) for method in args.methods]
        write_json_atomic(out.with_suffix(".json"), result)

    run_cell(replace(args, examples=min(args.examples, 8)), plan[0][0], plan[0][1], runs / "warm-up", peak["tflops"])
    for variant, method in tqdm(plan, desc="training benchmark", disable=not progress):
        try:
            cell = run_cell(args, variant, method, runs, peak["tflops"])
        except Exception as error:  # a variant this machine cannot run (compile without a compiler, say)
            if isinstance(error, DHRDInputError):
                raise
            logger.warning("%s / %s failed: %s", variant, method, error)
            cell = {"variant": variant, "method": method, "error": f"{type(error).__name__}: {error}"[:300]}
        result["cells"].append(cell)
        measured = [c for c in result["cells"] if "error" not in c]
        result["dhrd_overhead"] = dhrd_overheads(measured)
        result["speedup_over_before"] = speedups(measured)
        write_json_atomic(out.with_suffix(".json"), result)
    write_text_atomic(out.with_suffix(".md"), markdown(result))
    plot(result, out.with_suffix(".png"))
    import shutil

    shutil.rmtree(runs, ignore_errors=True)
    return result


TRAIN_COLUMNS = (
    "variant",
    "method",
    "rows",
    "steps",
    "s/epoch",
    "s/step (median)",
    "real tok/s",
    "padding",
    "LM targets",
    "useful TFLOP/s",
    "of bf16 peak",
    "peak RSS GB",
    "RSS after step 1 / end GB",
)


def table_rows(result: dict) -> list[list[str]]:
    rows = []
    for c in result["cells"]:
        if "error" in c:
            rows.append([c["variant"], c["method"], "–", "–", c["error"][:60], *["–"] * 8])
            continue
        rows.append(
            [
                c["variant"],
                c["method"],
                str(c["rows"]),
                str(c["steps"]),
                f"{c['seconds']:.1f}",
                f"{c['seconds_per_step_median']:.2f}",
                f"{c['real_tokens_per_s']:.0f}",
                f"{100 * c['padding_share']:.1f}%",
                str(c["reasoning_targets"]),
                f"{c['useful_tflops']:.3f}",
                f"{100 * c['fraction_of_peak']:.1f}%",
                *_memory_cells(c.get("memory")),
            ]
        )
    return rows


def _memory_cells(memory: dict | None) -> list[str]:
    if not memory or memory.get("peak_rss") is None:
        return ["–", "–"]
    return [f"{memory['peak_rss']:.2f}", f"{memory['rss_after_first_step']:.2f} / {memory['rss_at_end']:.2f}"]


def markdown(result: dict) -> str:
    s, p = result["settings"], result["provenance"]
    lines = [
        f"# Training throughput: {s['task']}, {s['examples']} training examples, one epoch per cell",
        "",
        f"Machine: {machine_text(p)}, {s['dtype']}; "
        f"GEMM peak {result['gemm_peak']['tflops']:.3f} TFLOP/s ({result['gemm_peak']['n']}^3). "
        f"Versions: {versions_text(p)}.",
        "",
        "| " + " | ".join(TRAIN_COLUMNS) + " |",
        "|" + "---|" * len(TRAIN_COLUMNS),
        *("| " + " | ".join(r) + " |" for r in table_rows(result)),
        "",
    ]
    rows = max((c.get("rows", 0) for c in result["cells"]), default=0)
    batch = s.get("extra", {}).get("per_device_train_batch_size", 8)
    if rows and rows // (batch * 4) <= 1:
        lines += [
            f"On {rows} rows, transformers' length grouping sorts within mega-batches of one batch: it has no room "
            "to act on this sample, so 'default' and 'random batches' differ here by chance; read its effect from "
            "the padding of a whole epoch below (and the full RTE epoch in results/learning-budget-smollm2-cpu).",
            "",
        ]
    lines += noise_lines(result["cells"])
    if result.get("speedup_over_before"):
        lines += ["Epoch time of 'before' (training as it was before this benchmark) over each variant's:", ""]
        lines += [f"- {x['variant']} / {x['method']}: {x['speedup']:.2f}x" for x in result["speedup_over_before"]]
        lines.append("")
    if result.get("epoch_padding"):
        lines += ["Padding share of one epoch over the whole training split, as the Trainer batches it:", ""]
        lines += [
            f"- {x['method']}: {x['rows']} rows, {x['real_tokens']} real tokens; random batches "
            f"{100 * x['random']:.1f}% padding, length-grouped {100 * x['grouped']:.1f}%"
            for x in result["epoch_padding"]
        ]
        lines.append("")
    if result.get("dhrd_overhead"):
        lines += [
            "DHRD's epoch time over pooled's, beside the extra work it does:",
            "",
            "| variant | DHRD / pooled time | real-token ratio | useful-FLOP ratio |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {x['variant']} | {x['time_ratio']:.2f} | {x['token_ratio']:.2f} | {x['flop_ratio']:.2f} |"
            for x in result["dhrd_overhead"]
        ]
        lines.append("")
    lines += [
        "Useful FLOPs count real tokens only: 2 per weight forward, 2 backward (input gradients), 2 more for "
        "weights that train; attention 4n²d per layer forward, 3x with the backward; the reasoning head's "
        "vocabulary projection on its targets only. Time is the optimiser step (forward, backward, AdamW).",
        "Resident memory (GB, the process's VmRSS and its peak VmHWM, reset before each cell): the model, its "
        "optimiser state and the step's activations; the activation budget is --activation-memory (dhrd.memory).",
    ]
    if p.get("command"):
        lines += ["", f"Command: `{p['command']}`"]
    return "\n".join(lines) + "\n"


def noise_lines(cells: list[dict]) -> list[str]:
    """A variant that changes DHRD's loss only trains pooled exactly as 'default' does: the two pooled epoch
    times differ by the run-to-run noise alone, which says how large a difference between cells means nothing."""
    pooled = {c["variant"]: c for c in cells if c.get("method") == "pooled" and "error" not in c}
    lines = []
    for variant, settings in VARIANTS.items():
        if variant in pooled and "default" in pooled and settings and set(settings) <= DHRD_ONLY_SETTINGS:
            noise = abs(pooled[variant]["seconds"] / pooled["default"]["seconds"] - 1)
            lines += [
                f"Pooled trains the same in 'default' and '{variant}' (its setting is DHRD's loss only): their "
                f"epoch times differ by {100 * noise:.1f}%, this run's noise between cells; differences of that "
                "size are not effects.",
                "",
            ]
    return lines


def plot(result: dict, path: Path) -> Path | None:
    cells = [c for c in result["cells"] if "error" not in c]
    if not cells:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(c["variant"] for c in cells))
    methods = list(dict.fromkeys(c["method"] for c in cells))
    fig, ax = plt.subplots(figsize=(1.6 * len(variants) + 3, 3.6))
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        values = [
            next((c["real_tokens_per_s"] for c in cells if c["variant"] == v and c["method"] == method), 0)
            for v in variants
        ]
        ax.bar([i + j * width for i in range(len(variants))], values, width, label=method)
    ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(variants))], variants, fontsize=8)
    ax.set_ylabel("real (non-pad) tokens/s")
    ax.set_title(f"training throughput, {result['settings']['task']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure_atomic(fig, path)
