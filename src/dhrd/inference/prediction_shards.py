"""``dhrd predict`` over several processes: ``accelerate launch --num_processes N -m dhrd predict ...``.

The input is read in chunks of ``chunk_rows`` rows, and process r of N predicts chunk k where k % N == r: the
shares differ by at most a chunk whatever the input's size, and every chunk is the one a single process predicts,
batch for batch, so the output is a single process's, byte for byte. Each process appends its predictions to its
own JSONL shard (``<output>.shards/rank-R-of-N.jsonl``) with its own progress record (a ``PredictionSink``), so a
kill at any moment is resumed shard by shard by the same command. Once every shard is whole (accelerate's
``gather_object`` waits for every process), the main process reads the shards back a chunk at a time in input
order and writes the output through a ``PredictionSink`` of its own, as resumable; the shards go once the output
is whole. Memory stays one chunk per process.

accelerate's ``PartialState.split_between_processes`` splits a list held whole in memory; the input here is
streamed, so the split is this stride over chunks instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from itertools import islice
from pathlib import Path

from .prediction_rows import FileRows, PredictSummary, predict_chunks
from .prediction_sink import PredictionSink, shards_dir


class Processes:
    """The processes ``accelerate launch`` started, as accelerate's ``PartialState`` sees them (one process when
    dhrd was not launched)."""

    def __init__(self) -> None:
        from accelerate import PartialState

        from ..runtime import device

        # on the device predictions run on: without cpu=True, launched CPU processes would each count as the only one
        self.state = PartialState(cpu=device().type == "cpu")

    @property
    def num_processes(self) -> int:
        return self.state.num_processes

    @property
    def process_index(self) -> int:
        return self.state.process_index

    @property
    def is_main_process(self) -> bool:
        return self.state.is_main_process

    def gather(self, value: int) -> list[int]:
        """Every process's ``value``, in rank order, once every process has given its own (a barrier too)."""
        if self.num_processes == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])


def shard_path(output: Path, rank: int, processes: int) -> Path:
    return shards_dir(output) / f"rank-{rank:05d}-of-{processes:05d}.jsonl"


def predict_sharded(
    run: dict,
    processes: Processes,
    reading: FileRows,
    output: Path,
    fingerprint: dict,
    columns: list[str],
    resume: bool,
    progress: bool,
) -> PredictSummary:
    """This process's share of the input into its shard; then, on the main process, the shards into ``output``.
    The summary on the main process counts every process's rows; the others' only report their own."""
    started = time.perf_counter()
    rank, count = processes.process_index, processes.num_processes
    # a single process's fingerprint; opened first, so that --restart drops a finished output at once, as one does
    sink = PredictionSink(output, fingerprint, resume, columns=columns) if processes.is_main_process else None
    # the stride depends on the chunk size and the number of processes: a shard is resumed only with both
    shard_print = {**fingerprint, "shard": [rank, count], "chunk_rows": reading.chunk_rows}
    shard = PredictionSink(shard_path(output, rank, count), shard_print, resume)
    seen = predict_chunks(run, shard, reading, progress and processes.is_main_process, (rank, count))
    resumed = sum(processes.gather(shard.resumed_from))  # returns once every shard is whole
    if sink is None:
        return PredictSummary(str(output), shard.done, shard.resumed_from, processes=count, main_process=False)
    merged = merge_shards(sink, [shard_path(output, r, count) for r in range(count)], reading.chunk_rows)
    if merged != seen:  # a shard changed under the run: the output is not finished from it
        raise RuntimeError(f"{shards_dir(output)}: the shards hold {merged} rows, the input {seen}")
    sink.finish()  # the output is whole: its progress record goes, then the shards
    seconds = time.perf_counter() - started
    return PredictSummary(str(output), seen, resumed, seconds, reading.columns.id, reading.keep, processes=count)


def merge_shards(sink: PredictionSink, shards: list[Path], chunk_rows: int) -> int:
    """Append the shards' rows to ``sink`` in input order (chunk k is the next chunk of shard k % len(shards)),
    past the rows it holds already; the number of rows in the shards."""
    skip, merged, index = sink.done, 0, 0
    with contextlib.ExitStack() as stack:
        # binary lines: JSON escapes every newline inside a value, and a shard with no rows has no file
        handles = [stack.enter_context(open(s if s.is_file() else os.devnull, "rb")) for s in shards]
        while lines := list(islice(handles[index % len(handles)], chunk_rows)):
            rows = [json.loads(line) for line in lines]
            todo, skip = rows[skip:], max(0, skip - len(rows))
            if todo:
                sink.write(todo)
            merged, index = merged + len(rows), index + 1
    return merged


__all__ = ["Processes", "merge_shards", "predict_sharded", "shard_path"]
