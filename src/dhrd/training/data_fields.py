"""``DHRDTrainingArguments``' data fields: the task or your own files (or dataset), their columns, labels and
instruction, and the caps and seeds that select rows."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.inputs import DEFAULT_VALIDATION_FRACTION
from .option_fields import DATA, option


@dataclass
class DataFields:
    """Data fields of ``DHRDTrainingArguments``, which inherits them (its bases name the groups in reverse
    order, so that ``dataclasses.fields`` and ``dhrd train --help`` list data, model, loss)."""

    task: str | None = option(
        "cb",
        "SuperGLUE task (boolq, cb, copa, multirc, rte, wic, wsc), a list 'cb,rte', or 'all' for one joint "
        "model; ignored with --train-file or --dataset",
        DATA,
    )
    input_format: str = option(
        "yesno",
        "yesno: the paper's single Yes/No prompt; native: each task's own labels",
        DATA,
        choices=["yesno", "native"],
    )
    data_dir: str | None = option(None, "folder with <Task>/{train,val,test}.jsonl (None: the shared set)", DATA)
    train_file: str | None = option(None, "your own CSV/JSONL/Parquet training file", DATA)
    validation_file: str | None = option(
        None, "your own validation file (the evaluation split; None: --validation-fraction of --train-file)", DATA
    )
    # scored once, by the kept model, after training: never seen by a choice (the validation file picks the epoch)
    test_file: str | None = option(
        None,
        "your own test file, read as --train-file is: the kept model is scored on it at the end (metrics.json's "
        "test, test-predictions.json); --max-eval-examples caps it too",
        DATA,
        run=False,
    )
    validation_fraction: float | None = option(
        None,
        "with --train-file and no --validation-file: this seeded (--subset-seed), stratified fraction of its "
        f"rows is the validation split, never trained on (None: {DEFAULT_VALIDATION_FRACTION} there)",
        DATA,
    )
    dataset: str | None = option(
        None,
        "a datasets dataset: a save_to_disk directory or a hub name, read as your files are (the same column "
        "options; a ClassLabel label column names the labels): its train split trains, its validation split "
        "(else its test split) is evaluated",
        DATA,
    )
    dataset_config: str | None = option(None, "the hub dataset's configuration (load_dataset's second argument)", DATA)
    text_column: str = option("text", "text column of your data", DATA)
    text_pair_column: str | None = option(None, "optional second text column", DATA)
    label_column: str = option("label", "label column (strings or integers)", DATA)
    id_column: str | None = option(
        None,
        "your rows' id column: rationale files and predictions are keyed by it (None: the 1-based row number)",
        DATA,
    )
    rationale_column: str | None = option(
        None,
        "a column of the training data with an explanation per row (empty: that row trains the classifier only)",
        DATA,
    )
    encoding: str = option(
        "utf-8", "of your files: utf-8 (a byte-order mark is fine), latin-1, cp1252", DATA, run=False
    )
    label_map: dict[str, str] | str | None = option(
        None,
        "your labels' names, value=name in label order: 0=negative,1=positive (or a mapping)",
        DATA,
        aliases=["--label-names"],
    )
    instruction: str | None = option(
        None,
        "your task's question ('Is this review positive or negative?'): the teacher's prompt asks it; saved "
        "with the model",
        DATA,
    )
    # off by default: with it, pooled SmolLM2 scored 7.7 points lower on CB as a CSV
    # (results/own-data-instruction-smollm2-cpu.md)
    instruction_in_input: bool = option(False, "the classifier's input ends with --instruction too", DATA)
    max_train_examples: int | None = option(
        None, "cap the training examples (a seeded sample, or the first N with --selection first)", DATA
    )
    selection: str = option(
        "seeded",
        "which rows --max-train-examples takes: seeded (a sample drawn with --subset-seed, as dhrd rationales "
        "--max-examples takes it) or first (the first N training rows in file order)",
        DATA,
        choices=["seeded", "first"],
    )
    max_eval_examples: int | None = option(
        None, "cap the validation examples (and --test-file's): a seeded sample", DATA, run=False
    )
    subset_seed: int | None = option(
        None, "seed of the capped samples (None: --seed); fixed, it pairs runs across seeds", DATA
    )
