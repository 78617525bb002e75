"""``dhrd predict``: classify a file of any size in chunks, appending the predictions as it goes.

Memory stays flat whatever the file holds: rows are read, encoded, predicted and written a chunk at a time
(``chunk_rows``), and each batch is bounded by the length policy and a token budget (``predict_proba``).
Output is JSONL, CSV or Parquet by the output's extension. From before the first row is written until the
output is whole, a small progress record beside it (``<output>.progress.json``) says how many input rows, and
how many bytes of output, are final; a run killed at any moment is resumed by the same command from there, with
nothing duplicated or torn. An output without a progress record is finished: the same command leaves it as it
is (``--restart`` predicts again). Under ``accelerate launch --num_processes N`` the rows are shared out
between the processes and joined into the same one output (``dhrd.inference.prediction_shards``).

Here: the options checked, the model loaded and the run's fingerprint; the output is ``prediction_sink``'s, a
file's rows are predicted by ``prediction_rows``.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..checks import at_least, inference_options, input_file, output_file, split_name
from ..data.datasets_input import DatasetSplit
from ..data.tables import check_encoding, iter_table
from ..data.tasks import choices_by_group
from ..errors import DHRDInputError
from . import prediction_shards  # by its module: a test stands fake processes in for accelerate's
from .engines import load_inference_model, model_file
from .evaluation import (
    examples_for_model,
    inference_limits,
    input_source,
    model_columns,
    saved_data_spec,
)
from .prediction_rows import CHUNK_ROWS, FileRows, PredictSummary, predict_chunks, prediction_row, probabilities
from .prediction_sink import PredictionSink, finished_rows, output_format


def _fingerprint(model_file: Path, source: dict, settings: dict) -> dict:
    """What a resumed run must share with the interrupted one: the model (its directory and the time stamp of the
    file the engine reads), the input and the settings."""
    stamp = {"model": str(model_file.parent.resolve()), "model_mtime_ns": model_file.stat().st_mtime_ns}
    return {**stamp, **source, **settings}


def _table_columns(names, keep) -> list[str]:
    """A CSV's or Parquet's columns, the same for every row: the label's is there even where row 1 has none."""
    return ["id", "prediction", *(f"probability_{name}" for name in names), "label", *keep]


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
    trust_remote_code: bool = False,
    id_column: str | None = None,
    keep_columns: list[str] | tuple[str, ...] = (),
    encoding: str | None = None,
    max_length: int | None = None,
    truncation: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    resume: bool = True,
    progress: bool = True,
    dataset: str | None = None,
    dataset_config: str | None = None,
    engine: str = "torch",
) -> PredictSummary:
    """One prediction per input row (its id, the predicted label, every label's probability, the label where
    the input has one, and ``keep_columns``), appended to ``output`` in chunks; resumable after a kill. The
    rows are a file's, a ``datasets`` dataset's ``split`` (a ``save_to_disk`` directory or a hub name), or a
    SuperGLUE task's ``split``.

    Rows are identified by ``id_column`` [default: the model's training id column, else an ``id`` column
    where the file has one, else the 1-based row number]. ``engine``: ``torch`` runs a trained model directory,
    ``onnxruntime`` an export directory or one of its ``.onnx`` files (``dhrd export --format onnx``). A finished
    ``output`` is left as it is (``complete``), unless ``resume`` is off."""
    output = Path(output)
    output_file("--output", output)
    output_format(output)
    path = _checked_input(output, file, task, split, data_dir, dataset, dataset_config, batch_size, max_length)
    at_least("--chunk-rows", chunk_rows, 1)
    encoding = check_encoding(encoding)
    processes = prediction_shards.Processes()  # one, unless accelerate launched several
    shared = dict(processes=processes.num_processes, main_process=processes.is_main_process)
    if resume and (rows := finished_rows(output)) is not None:
        return PredictSummary(str(output), rows, rows, complete=True, **shared)
    if path is None and not processes.is_main_process:  # a task's split is small, and predicted whole: by one
        return PredictSummary(str(output), 0, **shared)
    model, tokenizer = load_inference_model(model_path, engine, trust_remote_code=trust_remote_code, compile=compile)
    source_file = model_file(model_path, engine)
    max_length, truncation = inference_limits(model, tokenizer, max_length, truncation)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    settings = {"max_length": max_length, "truncation": truncation, "keep_columns": list(keep_columns)}
    if engine != "torch":  # the int8 and fp32 graphs share a directory but not their predictions
        settings.update(engine=engine, model_file=source_file.name)
    run = dict(model=model, tokenizer=tokenizer, names=names, batch_size=batch_size, bf16=bf16, compile=compile)
    run.update(max_length=max_length, truncation=truncation)
    if path is None:
        if keep_columns or id_column:
            raise DHRDInputError("--keep-columns and --id-column are for --file and --dataset")
        source = {"task": task, "split": split, "data_dir": data_dir}
        sink = PredictionSink(output, _fingerprint(source_file, source, settings), resume)
        return _predict_task(run, sink, task, split, data_dir, progress)
    if isinstance(path, DatasetSplit):
        source = path.fingerprint()
    else:
        stat = path.stat()
        source = {"input": str(path.resolve()), "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns}
    id_column = _id_column(path, encoding, id_column, saved_data_spec(model).id_column)
    columns = model_columns(
        model, text_column=text_column, text_pair_column=text_pair_column, id_column=id_column, source=path
    )
    settings.update(columns=[columns.text, columns.text_pair, columns.label, columns.id], encoding=encoding)
    fingerprint = _fingerprint(source_file, source, settings)
    table_columns = _table_columns(names, keep_columns)
    reading = FileRows(path, columns, list(keep_columns), encoding, chunk_rows)
    if processes.num_processes > 1:
        return prediction_shards.predict_sharded(
            run, processes, reading, output, fingerprint, table_columns, resume, progress
        )
    sink = PredictionSink(output, fingerprint, resume, columns=table_columns)
    return _predict_file(run, sink, reading, progress)


def _checked_input(output, file, task, split, data_dir, dataset, dataset_config, batch_size, max_length):
    """The rows to predict (a file's path, a dataset split, or None for a task), with every option checked
    before any model loads."""
    inference_options(batch_size, max_length, data_dir=data_dir)
    if file is None and task is None and dataset is None:
        raise DHRDInputError("give --file or --task (or --dataset)")
    split_name(split)
    if file is None and dataset is None:
        return None
    path = input_source(file, dataset, dataset_config, split)
    if not isinstance(path, DatasetSplit):
        input_file("--file", path)
    return path


def _id_column(path, encoding: str, given: str | None, trained: str | None) -> str | None:
    if given:
        return given
    first = next(iter_table(path, encoding), (None, {}))[1]
    for candidate in (trained, "id"):
        if candidate and candidate in first:
            return candidate
    return None


def _predict_file(run, sink, reading: FileRows, progress) -> PredictSummary:
    started = time.perf_counter()
    predict_chunks(run, sink, reading, progress)
    total = sink.done
    sink.finish()
    return PredictSummary(
        str(sink.path), total, sink.resumed_from, time.perf_counter() - started, reading.columns.id, reading.keep
    )


def _predict_task(run, sink, task, split, data_dir, progress) -> PredictSummary:
    """A SuperGLUE split (small): predicted whole, so that each example's choice can be made over its rows."""
    started = time.perf_counter()
    if sink.done:
        sink.finish()  # a task's rows are written in one chunk: recorded means finished
        return PredictSummary(str(sink.path), sink.done, sink.done)
    examples, _ = examples_for_model(run["model"], task, split, data_dir, require_labels=False)
    probs = probabilities(run, [e.text for e in examples], f"{task} {split}", [e.id for e in examples], progress)
    chosen = choices_by_group(examples, probs)
    names = run["names"]
    rows = []
    for example, p in zip(examples, probs):
        row = {"id": example.id, "task": example.task, "group": example.group, "candidate": example.candidate}
        row["example_prediction"] = chosen.get(example.group)
        label = None if example.label is None else names[example.label]
        row.update(prediction_row(example.id, names, p, label, {}))
        rows.append({k: v for k, v in row.items() if v is not None})
    sink.write(rows)
    sink.finish()
    return PredictSummary(str(sink.path), len(rows), 0, time.perf_counter() - started)
