"""Inference, evaluation and prediction with a trained classifier (the reasoning head is never used)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import ClassificationCollator, DataSpec, encode_texts, load_file_examples
from .errors import DHRDInputError
from .modeling import load_classifier, model_spec
from .runtime import autocast, bf16_supported, device, write_json_atomic, write_jsonl_atomic
from .tasks import Example, choices_by_group, evaluate_rows


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
) -> np.ndarray:
    """Class probabilities for each text, in input order.

    The fast path (each switch measured by ``dhrd benchmark``): rows sorted by length so each batch pads
    little, ``torch.inference_mode``, and bf16 autocast where the hardware has it. ``compile`` adds
    ``torch.compile`` (faster per batch, but compiling costs a minute or more: off by default).
    ``batch_seconds``, when given, receives ``(rows in the batch, seconds)`` for every batch: the
    per-request latencies.
    """
    spec = model_spec(model)
    max_length = max_length or spec.get("max_length") or 10**9
    truncation = truncation or spec.get("truncation", "error")
    bf16 = bf16_supported() if bf16 is None else bf16
    ids = encode_texts(texts, tokenizer, max_length, "left" if truncation == "left" else "none")
    model.to(device()).eval()
    order = np.argsort([len(i) for i in ids], kind="stable")[::-1] if sort_by_length else np.arange(len(ids))
    collate = ClassificationCollator(tokenizer.pad_token_id)
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    grad_off = torch.inference_mode if inference_mode else torch.no_grad
    forward = torch.compile(model, dynamic=True) if compile else model
    for start in tqdm(range(0, len(texts), batch_size), desc="Predicting", unit="batch", disable=not progress):
        began = time.perf_counter()
        rows = order[start : start + batch_size]
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


def examples_for_model(
    model,
    task: str | None,
    split: str,
    data_dir: str | None,
    file: str | None,
    text_column: str | None,
    text_pair_column: str | None,
    label_column: str | None,
    require_labels: bool,
) -> tuple[list[Example], str]:
    spec = DataSpec(
        **{k: v for k, v in (model_spec(model).get("data") or {}).items() if k in DataSpec.__dataclass_fields__}
    )
    label_names = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    if file is not None:
        columns = spec.columns.__class__(
            text_column or spec.text_column,
            label_column or spec.label_column,
            text_pair_column if text_pair_column is not None else spec.text_pair_column,
        )
        return load_file_examples(file, columns, label_names, require_labels), spec.input_format
    if task is not None:
        spec.tasks, spec.train_file = task, None
    if data_dir is not None:
        spec.data_dir = data_dir
    if not spec.tasks:
        raise DHRDInputError("this model was trained on a file: pass --file (and the column names if they differ)")
    spec.validate()
    if tuple(spec.label_names()) != label_names:
        raise DHRDInputError(f"the model's labels {label_names} do not match task {spec.tasks} ({spec.label_names()})")
    return spec.split(split, label_names), spec.input_format


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
) -> dict:
    """The task's official metrics (or accuracy / macro-F1 on a user file) for a saved model."""
    model, tokenizer = load_classifier(model_path)
    examples, input_format = examples_for_model(
        model, task, split, data_dir, file, text_column, text_pair_column, label_column, True
    )
    if any(e.label is None for e in examples):
        raise DHRDInputError(f"the {split} split has no labels (SuperGLUE test labels are hidden): use predict")
    examples = first_examples(examples, max_examples)
    start = time.perf_counter()
    probs = predict_proba(model, tokenizer, [e.text for e in examples], batch_size, bf16=bf16, compile=compile)
    seconds = time.perf_counter() - start
    metrics = evaluate_rows(examples, probs, input_format)
    metrics.update(
        split=split,
        rows=len(examples),
        seconds=round(seconds, 3),
        rows_per_second=round(len(examples) / seconds, 2),
        model=str(model_path),
    )
    if output is not None:
        write_json_atomic(output, metrics)
    return metrics


def predict(
    model_path: str | Path,
    output: str | Path,
    file: str | None = None,
    task: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    batch_size: int = 32,
    bf16: bool | None = None,
    compile: bool = False,
) -> list[dict]:
    """One prediction per row with every label's probability, written as JSONL."""
    model, tokenizer = load_classifier(model_path)
    examples, _ = examples_for_model(model, task, split, data_dir, file, text_column, text_pair_column, None, False)
    probs = predict_proba(model, tokenizer, [e.text for e in examples], batch_size, bf16=bf16, compile=compile)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    chosen = choices_by_group(examples, probs)
    rows = []
    for example, p in zip(examples, probs):
        row = {"id": example.id}
        if example.task != "custom":
            row.update(task=example.task, group=example.group, candidate=example.candidate)
            row["example_prediction"] = chosen.get(example.group)
        row["prediction"] = names[int(np.argmax(p))]
        row["probabilities"] = {name: round(float(v), 6) for name, v in zip(names, p)}
        if example.label is not None:
            row["label"] = names[example.label]
        rows.append({k: v for k, v in row.items() if v is not None})
    write_jsonl_atomic(output, rows)
    return rows
