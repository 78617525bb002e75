"""The arguments of ``dhrd benchmark``, ``evaluate``, ``predict``, ``export``, ``rationales``, ``explain`` and
``push``, declared once: each field is the Python API's
setting and the command's option (``dhrd.options.cli_options`` generates the command from it). Light: no torch, so
that ``--help`` answers at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.lengths import TRUNCATIONS
from ..errors import DHRDInputError
from ..inference.engines import ENGINES
from ..inference.int8_bar import INT8_MAX_ACCURACY_CHANGE, INT8_MIN_AGREEMENT
from .cli_options import option

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
MODEL_HELP = "a trained model directory (or a run directory holding model/)"
ENCODING_HELP = "of --file (a UTF-8 byte-order mark is fine), e.g. latin-1, cp1252"
COMPILE_HELP = "torch.compile the model: faster batches, minutes to compile"
LABEL_NAMES_HELP = (
    "your labels' names, value=name in label order: 0=negative,1=positive. Used in the teacher's prompt, the "
    "reasoning head's 'Final Answer', predictions and the model's id2label (a teacher refuses bare numbers)"
)
INSTRUCTION_HELP = (
    "your task's question, e.g. 'Is this movie review positive or negative?': the teacher's prompt asks it after "
    "the text, as the SuperGLUE prompts ask theirs; saved with the model (see --instruction-in-input)"
)
# prompts.CHECKS, written out: importing prompts loads torch, which `dhrd --help` must not (a test compares them)
RATIONALE_CHECKS = ("empty", "truncated", "repetitive", "leak", "contradicts", "short", "conclusion", "invented")


def trust_option():
    """``--trust-remote-code``: a flag without a ``--no-`` form, as every command has spelled it."""
    return option(False, TRUST_HELP, flag="--trust-remote-code", aliases=["--trust_remote_code"])


def switch(name: str, help: str):
    """A bool flag ``--name`` (and ``--name_with_underscores``) without a ``--no-`` form."""
    snake = "--" + name.replace("-", "_")
    return option(False, help, flag="--" + name, aliases=[snake] if snake != "--" + name else [])


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
        from ..data.tasks import TASKS

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
            from ..inference.onnx_graph import require_onnxruntime

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
    truncation: str | None = option(None, TRUNCATION_HELP, choices=list(TRUNCATIONS))
    compile: bool = option(False, COMPILE_HELP)
    trust_remote_code: bool = trust_option()
    engine: str = option("torch", ENGINE_HELP, choices=ENGINES)


@dataclass
class PredictArguments:
    """``dhrd predict``: ``prediction.predict``'s settings."""

    model: Path = option(..., MODEL_HELP)
    output: Path = option(
        ..., "predictions file: .jsonl, .csv or .parquet; written in chunks, resumed after an interruption"
    )
    file: Path | None = option(None, "CSV/TSV/JSONL/Parquet file to classify (any size: read in chunks)")
    dataset: str | None = option(None, DATASET_HELP + "; its --split is classified")
    dataset_config: str | None = option(None, DATASET_CONFIG_HELP)
    task: str | None = option(None, "or a SuperGLUE task (with --split)")
    split: str = option("test")
    data_dir: Path | None = option(None)
    text_column: str | None = option(None)
    text_pair_column: str | None = option(None)
    id_column: str | None = option(
        None,
        "the input's id column, carried to each prediction [default: the training file's, else 'id' "
        "where the file has one, else the 1-based row number]",
    )
    keep_columns: tuple[str, ...] | None = option(None, "comma-separated input columns copied to each prediction")
    encoding: str = option("utf-8", ENCODING_HELP)
    max_length: int | None = option(None, LENGTH_HELP)
    truncation: str | None = option(None, TRUNCATION_HELP, choices=list(TRUNCATIONS))
    batch_size: int = option(32)
    chunk_rows: int = option(1024, "rows read, predicted and appended at a time")
    restart: bool = switch("restart", "start over instead of resuming an interrupted run")
    compile: bool = option(False, COMPILE_HELP)
    trust_remote_code: bool = trust_option()
    engine: str = option("torch", ENGINE_HELP, choices=ENGINES)


@dataclass
class ExportArguments:
    """``dhrd export``: ``onnx_export.export_onnx``'s settings."""

    model: Path = option(..., MODEL_HELP)
    output: Path = option(..., "the export directory (replaced if it holds an earlier export)")
    format: str = option("onnx", "onnx: model.onnx, for onnxruntime", choices=["onnx"])
    quantize: str | None = option(
        None,
        "int8: also write model.int8.onnx, and print how often it agrees with fp32 and its speed-up",
        choices=["int8"],
    )
    check_file: Path | None = option(
        None,
        "rows in the model's columns (labels not needed) to check int8 on (the first 200); default: the data "
        "the run records, else three built-in texts",
    )
    int8_min_agreement: float = option(
        INT8_MIN_AGREEMENT,
        "keep model.int8.onnx only where it gives torch fp32's label on at least this fraction of the check rows "
        "(else exit code 2, model.onnx kept); 0 keeps it whatever it agrees on. Not judged on the built-in texts",
    )
    int8_max_accuracy_change: float = option(
        INT8_MAX_ACCURACY_CHANGE,
        "and only where it moves accuracy by at most this many points on check rows with gold labels; 100 keeps it "
        "whatever the change",
    )
    trust_remote_code: bool = trust_option()
    restart: bool = switch("restart", "export again where the same export is already there")


@dataclass
class RationalesArguments:
    """``dhrd rationales``: ``teacher.make_rationales``'s settings."""

    task: str | None = option(None, "SuperGLUE task whose training split gets rationales")
    train_file: Path | None = option(None, "or your own labelled CSV/JSONL/Parquet training file")
    validation_file: Path | None = option(
        None,
        "the validation file dhrd train will get, if any: then no rows of --train-file are held out "
        "(it is not read here)",
    )
    validation_fraction: float | None = option(
        None,
        "--train-file without --validation-file: the teacher skips the rows dhrd train holds out as its "
        "validation split (the same seeded, stratified fraction: pass train's --validation-fraction) [default: 0.1]",
    )
    dataset: str | None = option(None, "or " + DATASET_HELP + ": its train split")
    dataset_config: str | None = option(None, DATASET_CONFIG_HELP)
    text_column: str = option("text")
    text_pair_column: str | None = option(None)
    label_column: str = option("label")
    data_dir: Path | None = option(None, "folder with <Task>/train.jsonl [default: ../shared/data/superglue]")
    teacher: str | None = option(
        None, "local model (hub name, directory, .gguf file), or with --base-url the served model's name"
    )
    gguf_file: str | None = option(None, "GGUF file inside --teacher's directory")
    base_url: str | None = option(None, "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = option("OPENAI_API_KEY", "environment variable holding the server's key")
    import_file: Path | None = option(
        None,
        "rationales you already have (CSV/JSONL with idx and rationale columns, or a folder of <Task>/train.jsonl "
        "such as ../shared/data/rationales)",
        aliases=["--import"],  # its first name, which the README and recorded commands use
    )
    id_column: str | None = option(
        None,
        "--train-file's id column: the cache is keyed by it, as dhrd train --id-column keys rows [default: the "
        "1-based row number]; with --import, the imported file's id column too [default there: idx]",
    )
    import_id_column: str | None = option(None, "--import: its id column, where it differs from --id-column")
    rationale_column: str = option("rationale", "--import: the column with the rationale")
    encoding: str = option("utf-8", "of your files (training, --import, --template)")
    label_names: str | None = option(None, LABEL_NAMES_HELP)
    instruction: str | None = option(None, INSTRUCTION_HELP)
    output: Path | None = option(None, "cache folder [default: rationales/<teacher>--<prompt id>]")
    prompt: str = option(
        "label",
        "label: the teacher sees the gold label and justifies it (the paper's); free: it reasons and answers itself",
        choices=["label", "free"],
    )
    template: Path | None = option(
        None,
        "your own prompt template file (placeholders {input}, {answer}, {answers}, {sentinel} and the example's "
        "fields)",
    )
    batch_size: int = option(8, "local teacher: prompts generated together")
    concurrency: int = option(8, "server teacher: requests in flight")
    timeout: float = option(120.0, "server teacher: seconds per request")
    max_retries: int = option(4, "server teacher: retries of a failed request (429, 5xx, timeout)")
    on_problem: str = option(
        "retry",
        "bad answers (empty, truncated, repetitive, label leak, contradicting the gold label): retry then drop, "
        "drop, or keep",
        choices=["retry", "drop", "keep"],
    )
    retries: int = option(2, "re-asks of a bad answer under --on-problem retry (sampled)")
    checks: tuple[str, ...] = option(RATIONALE_CHECKS, "which checks count as problems")
    temperature: float = option(0.0, "0: greedy")
    max_new_tokens: int = option(160)
    seed: int = option(0)
    limit: int | None = option(None, "stop when the cache holds this many examples")
    max_examples: int | None = option(
        None,
        "only the examples dhrd train --max-train-examples N trains on (the same rows, as --selection takes them; "
        "one task)",
    )
    selection: str = option(
        "seeded",
        "which rows --max-examples takes: seeded (a sample, --subset-seed) or first (the first N training rows in "
        "file order); dhrd train's --selection takes the same",
        choices=["seeded", "first"],
    )
    subset_seed: int = option(
        42, "with --max-examples: matches dhrd train's --subset-seed (its default, --seed, is 42)"
    )

    def validate(self) -> None:
        """The combinations no teacher is asked under."""
        if not (self.train_file or self.dataset) and (self.label_names or self.instruction):
            raise DHRDInputError("--label-names and --instruction are for your own files (--train-file or --dataset)")
        if self.train_file and self.dataset:
            raise DHRDInputError("give --train-file or --dataset, not both")
        if (self.validation_file or self.validation_fraction is not None) and not self.train_file:
            raise DHRDInputError("--validation-file and --validation-fraction go with --train-file")
        if self.validation_file and self.validation_fraction is not None:
            raise DHRDInputError("give --validation-file or --validation-fraction, not both")


@dataclass
class ExplainArguments:
    """``dhrd explain``: the inputs the reasoning head explains."""

    model: Path = option(..., "a model trained with --method dhrd --keep-reasoning-head")
    text: list[str] | None = option(None, "an input to explain (repeatable)", repeat=True)
    task: str | None = option(None, "or explain the first examples of a task split")
    split: str = option("validation")
    data_dir: Path | None = option(None)
    max_examples: int = option(3)
    max_new_tokens: int = option(128)
    output: Path | None = option(None, "write the explanations as JSONL")
    trust_remote_code: bool = trust_option()

    def validate(self) -> None:
        """Before any model loads (a bad number or output path is one line at once)."""
        from ..checks import at_least, inference_options, output_file

        inference_options(1, max_examples=self.max_examples, data_dir=self.data_dir, split=self.split)
        at_least("--max-new-tokens", self.max_new_tokens, 1)
        output_file("--output", self.output)
        if not self.text and self.task is None:
            raise DHRDInputError("give --text or --task")


@dataclass
class PushArguments:
    """``dhrd push``: the model, where it goes on the hub, and how."""

    model_dir: Path = option(..., MODEL_HELP, positional=True)
    repo_id: str = option(..., "the hub repository, user/name (created where it does not exist)", positional=True)
    private: bool = switch("private", "create the repository private")
    token: str | None = option(None, "a hub token with write access [default: HF_TOKEN or `hf auth login`'s]")
    dry_run: bool = switch("dry-run", "list what would be uploaded, and where; no network")


__all__ = [
    "COT_ENGINES",
    "COT_SETTINGS",
    "SYSTEMS",
    "BenchmarkArguments",
    "BenchmarkCommand",
    "EvaluateArguments",
    "ExplainArguments",
    "ExportArguments",
    "PredictArguments",
    "PushArguments",
    "RationalesArguments",
]
