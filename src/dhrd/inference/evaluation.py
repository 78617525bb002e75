"""Inference, evaluation and prediction with a trained classifier (the reasoning head is never used)."""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checks import inference_options, input_file, output_file
from ..data.datasets_input import DatasetSplit, dataset_name, dataset_split
from ..data.examples import Example
from ..data.inputs import ClassificationCollator, Columns, DataSpec, file_example, load_file_examples
from ..data.lengths import UNKNOWN_CONTEXT_LENGTH, check_truncation, encode_within
from ..data.tables import check_encoding, iter_table
from ..data.task_metrics import evaluate_rows, floors
from ..errors import DHRDInputError
from ..hub import CARD, write_model_card
from ..modeling import find_model_dir, model_spec
from ..provenance import provenance
from ..runtime import autocast, bf16_supported, device, write_json_atomic
from .class_report import class_report, confusion_png_path, save_confusion_png
from .engines import load_inference_model

# Rows x padded width of one inference batch: with inputs capped at --max-length, this bounds the activations of
# a batch whatever the file holds (32 rows of 512 tokens).
MAX_BATCH_TOKENS = 16384


def inference_limits(model, tokenizer, max_length: int | None, truncation: str | None) -> tuple[int, str]:
    """The length policy of inference: the one the model was trained with (saved in its config), unless given.
    A model from elsewhere is capped at its context length."""
    spec = model_spec(model)
    if not max_length:
        max_length = spec.get("max_length")
    if not max_length:
        text_config = getattr(model.config, "text_config", model.config)
        limits = [getattr(text_config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
        max_length = min([n for n in limits if isinstance(n, int) and 0 < n < 10**6] or [UNKNOWN_CONTEXT_LENGTH])
    truncation = check_truncation(truncation or spec.get("truncation") or "error")
    return int(max_length), truncation


def encode_for_inference(
    texts: list[str], tokenizer, max_length: int, truncation: str, source: str = "input", names: list | None = None
) -> list[list[int]]:
    """Token ids under the length policy training read its rows with (``lengths.encode_within``)."""
    return encode_within(texts, tokenizer, max_length, truncation, source, names)


def token_batches(lengths: list[int], batch_size: int, max_batch_tokens: int, sort_by_length: bool = True) -> list:
    """Row indices of each batch: at most ``batch_size`` rows and ``max_batch_tokens`` rows x padded width (a
    single row longer than the budget is a batch of its own). Longest first, so each batch pads little."""
    order = np.argsort(lengths, kind="stable")[::-1] if sort_by_length else np.arange(len(lengths))
    batches, current, width = [], [], 0
    for row in order:
        grown = max(width, lengths[row])
        if current and (len(current) >= batch_size or grown * (len(current) + 1) > max_batch_tokens):
            batches.append(np.asarray(current))
            current, grown = [], lengths[row]
        current.append(row)
        width = grown
    if current:
        batches.append(np.asarray(current))
    return batches


def predict_proba(
    model,
    tokenizer,
    texts: list[str],
    batch_size: int = 32,
    max_length: int | None = None,
    truncation: str | None = None,
    bf16: bool | None = None,
    progress: bool = True,
    sort_by_length: bool = True,
    inference_mode: bool = True,
    compile: bool = False,
    batch_seconds: list | None = None,
    max_batch_tokens: int = MAX_BATCH_TOKENS,
    source: str = "input",
    names: list | None = None,
) -> np.ndarray:
    """Class probabilities for each text, in input order.

    Memory is bounded by design: inputs follow the length policy (``inference_limits``: too long is an error
    naming the input, unless ``truncation='left'``), and a batch holds at most ``max_batch_tokens`` padded
    tokens. The fast path (each switch measured by ``dhrd benchmark``): rows sorted by length so each batch
    pads little, ``torch.inference_mode``, and bf16 autocast where the hardware has it. ``compile`` adds
    ``torch.compile`` (faster per batch, but compiling costs a minute or more: off by default).
    ``batch_seconds``, when given, receives ``(rows in the batch, seconds)`` for every batch: the
    per-request latencies. ``source`` and ``names`` (one per text) name an input that is too long.
    """
    max_length, truncation = inference_limits(model, tokenizer, max_length, truncation)
    bf16 = bf16_supported() if bf16 is None else bf16
    ids = encode_for_inference(texts, tokenizer, max_length, truncation, source, names)
    model.to(device()).eval()
    batches = token_batches([len(i) for i in ids], batch_size, max_batch_tokens, sort_by_length)
    collate = ClassificationCollator(tokenizer.pad_token_id)
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    grad_off = torch.inference_mode if inference_mode else torch.no_grad
    forward = torch.compile(model, dynamic=True) if compile else model
    for rows in tqdm(batches, desc="Predicting", unit="batch", disable=not progress):
        began = time.perf_counter()
        batch = {k: v.to(device()) for k, v in collate([{"input_ids": ids[r]} for r in rows]).items()}
        with grad_off(), autocast(bf16):
            logits = forward(**batch).logits
        probs[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        if batch_seconds is not None:
            batch_seconds.append((len(rows), time.perf_counter() - began))
    return probs


def first_examples(examples: list[Example], n: int | None) -> list[Example]:
    """The rows of the first ``n`` original examples (all rows when ``n`` is None)."""
    if not n:
        return examples
    keep = set(list(dict.fromkeys(e.group for e in examples))[:n])
    return [e for e in examples if e.group in keep]


def model_columns(
    model,
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    source=None,
) -> Columns:
    """How a user file becomes a saved model's inputs: the columns, label names and instruction it was
    trained with, unless columns are given. A dataset ``source`` whose label column is a ClassLabel names
    its values itself."""
    trained = saved_data_spec(model).columns
    columns = replace(
        trained,
        text=text_column or trained.text,
        label=label_column or trained.label,
        text_pair=text_pair_column if text_pair_column is not None else trained.text_pair,
        id=id_column,
    )
    if isinstance(source, DatasetSplit) and source.label_map(columns.label):
        columns = replace(columns, label_map=source.label_map(columns.label))
    return columns


def input_source(file: str | None, dataset: str | None, dataset_config: str | None, split: str):
    """The rows to evaluate or predict: a file's path, or a split of a ``datasets`` dataset."""
    if file is not None and dataset is not None:
        raise DHRDInputError("give --file or --dataset, not both")
    if dataset is not None:
        return dataset_split(dataset, split, dataset_config)
    if dataset_config is not None:
        raise DHRDInputError("--dataset-config needs --dataset")
    return Path(file)


def saved_data_spec(model) -> DataSpec:
    """The DataSpec a model was trained with (its saved ``data`` settings)."""
    data = model_spec(model).get("data") or {}
    return DataSpec(**{k: v for k, v in data.items() if k in DataSpec.__dataclass_fields__})


def examples_for_model(
    model,
    task: str | None,
    split: str,
    data_dir: str | None = None,
    *,
    require_labels: bool = True,
    file: str | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    encoding: str | None = None,
) -> tuple[list[Example], str]:
    """The rows a saved model is evaluated or run on, and its input format: a split of its task (or of
    ``task``), or a user ``file`` read with the model's columns unless columns are given."""
    spec = saved_data_spec(model)
    label_names = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    if file is not None:
        columns = model_columns(
            model,
            text_column=text_column,
            text_pair_column=text_pair_column,
            label_column=label_column,
            id_column=id_column,
        )
        return load_file_examples(file, columns, label_names, require_labels, encoding=encoding), spec.input_format
    if task is None and spec.carves_validation and split in ("train", "validation"):
        # the validation split training carved from its file (the same seeded rows), or the rows it trained on
        if not Path(spec.train_file).is_file():
            raise DHRDInputError(
                f"{spec.train_file}: not found: this model's validation split was carved from it (run from the "
                "directory training ran in), or pass --file"
            )
        kept, held = spec.carved_splits(label_names)
        return (held if split == "validation" else kept), spec.input_format
    if task is not None:
        spec.tasks, spec.train_file = task, None
    if data_dir is not None:
        spec.data_dir = data_dir
    if not spec.tasks:
        raise DHRDInputError(
            "this model was trained on your own data: pass --file or --dataset (and the column names if they differ)"
        )
    spec.validate()
    if tuple(spec.label_names()) != label_names:
        raise DHRDInputError(f"the model's labels {label_names} do not match task {spec.tasks} ({spec.label_names()})")
    return spec.split(split, label_names), spec.input_format


def scores_report(examples: list[Example], probs, input_format: str, label_names: list[str]) -> dict:
    """What a scoring of labelled rows records, for `evaluate` and for training's own: the official metrics, each
    task's majority floor (always answering one label: the line a model must be above to have learnt) and the
    per-class report."""
    return {
        **evaluate_rows(examples, probs, input_format),
        "floors": floors(examples, input_format, len(label_names), chance=False, label_names=label_names),
        "classes": class_report(examples, probs, input_format, label_names),
    }


def evaluate(
    model_path: str | Path,
    task: str | None = None,
    split: str = "validation",
    data_dir: str | None = None,
    file: str | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    output: str | Path | None = None,
    batch_size: int = 32,
    max_examples: int | None = None,
    bf16: bool | None = None,
    compile: bool = False,
    trust_remote_code: bool = False,
    encoding: str | None = None,
    max_length: int | None = None,
    truncation: str | None = None,
    dataset: str | None = None,
    dataset_config: str | None = None,
    engine: str = "torch",
) -> dict:
    """The task's official metrics (or accuracy / macro-F1 on a user file or a ``datasets`` dataset's
    ``split``) for a saved model, and per task the per-class precision/recall/F1/support and confusion matrix
    (``classes``; ``dhrd.inference.class_report``). With ``output``, the JSON goes there and the confusion matrices
    beside it as ``<output stem>-confusion.png``. Inputs follow the model's length policy (``inference_limits``) unless
    ``max_length`` / ``truncation`` are given. ``engine``: ``torch`` runs a trained model directory,
    ``onnxruntime`` an ONNX export (``dhrd export``)."""
    inference_options(batch_size, max_length, max_examples, data_dir, split)
    output_file("--output", output)
    encoding = check_encoding(encoding)
    own = file is not None or dataset is not None
    source = input_source(file, dataset, dataset_config, split) if own else None  # a bad one fails fast
    if file is not None:
        input_file("--file", file)
    model, tokenizer = load_inference_model(model_path, engine, trust_remote_code=trust_remote_code, compile=compile)
    settings = dict(batch_size=batch_size, max_length=max_length, truncation=truncation, bf16=bf16, compile=compile)
    start = time.perf_counter()
    if source is not None:
        columns = model_columns(
            model, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column, source=source
        )
        examples, probs = _score_file(model, tokenizer, source, columns, encoding, max_examples, settings)
        input_format = (model_spec(model).get("data") or {}).get("input_format", "yesno")
    else:
        examples, input_format = examples_for_model(model, task, split, data_dir)
        if any(e.label is None for e in examples):
            raise DHRDInputError(f"the {split} split has no labels (SuperGLUE test labels are hidden): use predict")
        examples = first_examples(examples, max_examples)
        start = time.perf_counter()
        texts = [e.text for e in examples]
        source = f"{task or 'the model task'} {split}"
        probs = predict_proba(model, tokenizer, texts, source=source, names=[e.id for e in examples], **settings)
    seconds = time.perf_counter() - start
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    metrics = scores_report(examples, probs, input_format, label_names)
    metrics.update(
        split=split,
        rows=len(examples),
        seconds=round(seconds, 3),
        rows_per_second=round(len(examples) / seconds, 2),
        model=str(model_path),
        file=Path(file).name if file is not None else None,  # the model card names the scored file by it
        dataset=dataset_name(dataset) if dataset is not None else None,  # and a dataset by its name, never a path
        dataset_config=dataset_config,
        engine=engine,
    )
    if output is not None:
        metrics["confusion_png"] = str(save_confusion_png(metrics["classes"], confusion_png_path(output)))
        write_json_atomic(output, {**metrics, "provenance": provenance()})  # the file's record, not the scores'
        if engine == "torch":  # an ONNX export has no model card of its own
            _refresh_card(Path(output), model_path)
    return metrics


def _refresh_card(output: Path, model_path: str | Path) -> None:
    """Scores written beside the weights (``eval-<split>.json``) go into the model card too."""
    model_dir = find_model_dir(model_path)
    if output.parent.resolve() == model_dir.resolve() and (model_dir / CARD).is_file():
        write_model_card(model_dir)


def _score_file(model, tokenizer, path, columns: Columns, encoding, max_examples, settings, chunk_rows=1024):
    """A labelled file's (or dataset split's) rows and probabilities, read and predicted a chunk at a time:
    what is kept of each row is its label (the texts are dropped once predicted), so memory does not grow
    with the texts."""
    label_names = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    rows = iter_table(path, encoding)
    if max_examples:
        rows = islice(rows, max_examples)
    examples, probs = [], []
    while chunk := list(islice(rows, chunk_rows)):
        batch = [file_example(row, number, number, path, columns, label_names, True) for number, row in chunk]
        names = [f"row {number}" for number, _ in chunk]
        probs.append(
            predict_proba(model, tokenizer, [e.text for e in batch], source=str(path), names=names, **settings)
        )
        examples += [replace(e, text="") for e in batch]
    if not examples:
        raise DHRDInputError(f"{path}: no rows")
    return examples, np.concatenate(probs)
