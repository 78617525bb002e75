"""The arguments of ``dhrd benchmark`` and ``dhrd evaluate``, declared once: each field is the Python API's
setting and the command's option (``dhrd.cli_options`` generates the command from it). Light: no torch, so
that ``--help`` answers at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cli_options import option
from .engines import ENGINES
from .errors import DHRDInputError

# the reproduce runner's method names: ``cot`` is the CoT fine-tuned model (alpha 1, beta 0)
SYSTEMS = ("pooled", "dhrd", "cot-zero-shot", "cot")
COT_ENGINES = ("transformers", "llama.cpp", "vllm")  # llama.cpp: GGUF backbones; vllm: GPU machines
COT_SETTINGS = ("paper", "greedy")
ENGINE_HELP = (
    "torch: --model is a trained model; onnxruntime: --model is an export directory (its model.onnx) or one of "
    "its .onnx files, e.g. model.int8.onnx (dhrd export --format onnx)"
)
LENGTH_HELP = "longest input in tokens [default: the model's training --max-length]"
TRUNCATION_HELP = "error (an input longer than --max-length stops the run, naming it) or left [default: the model's]"
TRUST_HELP = (
    "run Python code shipped with the model or backbone (its config's or tokenizer's auto_map); off: never, "
    "only the installed dhrd and transformers classes are used"
)
DATASET_HELP = (
    "a datasets dataset: a save_to_disk directory (Dataset or DatasetDict) or a hub name, read as your files are "
    "(the same column options; a ClassLabel label column names the labels)"
)
DATASET_CONFIG_HELP = "the hub dataset's configuration (datasets.load_dataset's second argument)"


@dataclass
class BenchmarkArguments:
    task: str = option("cb", "the SuperGLUE task whose validation split is measured")
    data_dir: str | None = option(None, "folder with <Task>/val.jsonl [default: the shared set]")
    max_examples: int | None = option(None, "the first N validation examples, for every system")
    pooled: str | None = option(None, "a pooled classifier (run or model directory)")
    dhrd: str | None = option(None, "a DHRD classifier (run or model directory)")
    cot: str | None = option(
        None,
        "a CoT fine-tuned model: dhrd train --method dhrd --alpha 1 --beta 0 --keep-reasoning-head",
        aliases=["--cot-finetuned"],  # its earlier name, which recorded commands use
    )
    backbone: str | None = option(None, "zero-shot CoT's backbone [default: the classifiers' backbone]")
    zero_shot: bool = option(True, "zero-shot CoT on the backbone")
    batch_sizes: tuple[int, ...] = option((1, 32), "comma-separated")
    repeats: int = option(3, "timed passes per classifier and batch size (after a warm-up)")
    cot_repeats: int = option(1, "timed passes per CoT system (each one decodes every input)")
    cot_settings: tuple[str, ...] = option(COT_SETTINGS, "paper: T=0.1 top_p=0.7 500 tokens; greedy: fitted")
    greedy_max_new_tokens: int | None = option(None, "[default: fitted to the rationale cache's lengths]")
    rationales: str | None = option(None, "the rationale cache the greedy budget is fitted to [default: shared]")
    engines: tuple[str, ...] = option(
        COT_ENGINES, "CoT engines (llama.cpp: a GGUF backbone; vllm: a GPU), where usable"
    )
    fast_path: bool = option(True, "measure each switch of the classifier's inference path")
    compile: bool = option(True, "include torch.compile among the measured switches")
    bf16: bool | None = option(None, cli=False)
    threads: int | None = option(None, "torch (and llama.cpp) threads [default: torch's]")
    onnx: bool = option(
        False, "also time onnxruntime fp32 and int8 (exported for the run) beside torch bf16 and fp32", flag="--onnx"
    )
    # also time the command line's help, version and option errors (dhrd benchmark does)
    startup: bool = option(False, cli=False)
    seed: int = option(0, cli=False)
    output: str = option("results/benchmark", "writes <output>.json, .md and .png")
    progress: bool = option(True, cli=False)

    def validate(self) -> None:
        from .tasks import TASKS

        if self.task not in TASKS:
            raise DHRDInputError(f"unknown task {self.task!r}: choose from {', '.join(TASKS)}")
        if not (self.pooled or self.dhrd or self.cot or self.zero_shot):
            raise DHRDInputError("nothing to benchmark: give --pooled, --dhrd, --cot or --zero-shot")
        if any(b < 1 for b in self.batch_sizes) or not self.batch_sizes:
            raise DHRDInputError("--batch-sizes must be positive integers")
        if self.repeats < 1 or self.cot_repeats < 1:
            raise DHRDInputError("--repeats and --cot-repeats must be at least 1")
        unknown = set(self.cot_settings) - set(COT_SETTINGS) | set(self.engines) - set(COT_ENGINES)
        if unknown:
            raise DHRDInputError(f"unknown CoT setting or engine: {', '.join(sorted(unknown))}")
        if self.onnx:
            from .onnx_export import require_onnxruntime

            require_onnxruntime()  # before anything is timed


@dataclass
class BenchmarkCommand(BenchmarkArguments):
    """``dhrd benchmark``: ``BenchmarkArguments``, or with ``--train`` the training throughput
    (``training_benchmark.TrainBenchmarkArguments``, from the ``train_*`` options)."""

    train: bool = option(
        False, "measure training instead: real tokens/s, padding, FLOP/s of pooled and DHRD steps", flag="--train"
    )
    train_examples: int = option(64, "--train: training examples (a seeded sample) every cell steps over")
    train_variants: str | None = option(
        None,
        "--train: comma-separated; default, before, random batches, SDPA attention, torch dropout, "
        "one-piece LM loss, rationale-only LM loss, batch 16, batch 4, full fine-tuning, full + fused AdamW, "
        "torch.compile [default: all but rationale-only LM loss, batch 4 and torch.compile]",
    )
    train_methods: str = option("pooled,dhrd", "--train: pooled, dhrd or both")

    def benchmark_arguments(self) -> BenchmarkArguments:
        shared = {name: getattr(self, name) for name in BenchmarkArguments.__dataclass_fields__}
        return BenchmarkArguments(**shared)


@dataclass
class EvaluateArguments:
    """``dhrd evaluate``: ``evaluation.evaluate``'s settings."""

    model: Path = option(..., "a trained model directory (or a run directory holding model/)")
    task: str | None = option(None, "task to evaluate on [default: the task(s) the model was trained on]")
    split: str = option("validation", "train or validation (SuperGLUE test labels are hidden)")
    data_dir: Path | None = option(None, "folder with <Task>/{train,val}.jsonl [default: the shared set]")
    file: Path | None = option(None, "your own labelled CSV/JSONL/Parquet file")
    dataset: str | None = option(None, DATASET_HELP + "; its --split is evaluated")
    dataset_config: str | None = option(None, DATASET_CONFIG_HELP)
    text_column: str | None = option(None, "text column of your data [default: the model's]")
    text_pair_column: str | None = option(None, "second text column [default: the model's]")
    label_column: str | None = option(None, "label column [default: the model's]")
    output: Path | None = option(
        None,
        "write the metrics here as JSON [default: <model>/eval-<split>.json; --file: eval-file-<file name>.json]",
    )
    batch_size: int = option(32, "inputs scored together")
    max_examples: int | None = option(None, "evaluate on the first N examples only")
    encoding: str = option("utf-8", "of --file (a UTF-8 byte-order mark is fine), e.g. latin-1, cp1252")
    max_length: int | None = option(None, LENGTH_HELP)
    truncation: str | None = option(None, TRUNCATION_HELP, choices=["error", "left"])
    compile: bool = option(False, "torch.compile the model: faster batches, minutes to compile")
    trust_remote_code: bool = option(False, TRUST_HELP, flag="--trust-remote-code", aliases=["--trust_remote_code"])
    engine: str = option("torch", ENGINE_HELP, choices=ENGINES)


__all__ = [
    "COT_ENGINES",
    "COT_SETTINGS",
    "SYSTEMS",
    "BenchmarkArguments",
    "BenchmarkCommand",
    "EvaluateArguments",
]
