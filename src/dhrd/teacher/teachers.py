"""``make_rationales``: the resumable run that fills a rationale cache, from a local model, an OpenAI-compatible
server or a file the user has, for the rows training will use.

The teachers are in ``backends``, asking them in ``asking``, copying a file in ``imported`` and the choice of
rows in ``subset``; this module checks the options, names the cache and records the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..checks import above, at_least, input_dir, input_file, input_path, output_dir
from ..data.datasets_input import DatasetSplit
from ..data.inputs import DEFAULT_VALIDATION_FRACTION, Columns
from ..data.rationales import RationaleCache
from ..data.tables import id_key, table_source
from ..errors import DHRDInputError
from ..provenance import provenance
from .asking import RationalesInterrupted, RunSummary, generate_rationales
from .backends import LocalTeacher, OpenAITeacher, Teacher, teacher_name, teacher_slug
from .imported import import_identity, import_rationales
from .prompts import CHECKS
from .subset import training_subset

logger = logging.getLogger(__name__)


def _check_options(train_file, data_dir, import_file, template_file, output, max_examples, **numbers) -> None:
    """``dhrd rationales``' numbers and paths, before any data is read or teacher loads."""
    for option in ("batch_size", "concurrency", "max_new_tokens", "limit"):
        at_least("--" + option.replace("_", "-"), numbers[option], 1)
    for option in ("max_retries", "retries", "temperature"):
        at_least("--" + option.replace("_", "-"), numbers[option], 0)
    above("--timeout", numbers["timeout"], 0)
    at_least("--max-examples", max_examples or None, 1)
    if train_file is not None and not isinstance(train_file, DatasetSplit):
        input_file("--train-file", train_file)
    input_dir("--data-dir", data_dir)
    input_path("--import", import_file)
    input_file("--template", template_file)
    output_dir("--output", output)


def _ask_teacher(
    items, answers, template, cache, teacher, gguf_file, base_url, api_key_env, summary=None, **asking
) -> RunSummary:
    """A local or served teacher asked about every item the cache lacks (``generate_rationales``)."""
    backend: Teacher = (
        OpenAITeacher(base_url, teacher, api_key_env, asking["concurrency"], asking["timeout"], asking["max_retries"])
        if base_url
        else LocalTeacher(teacher, gguf_file, asking["batch_size"])
    )
    names = ("policy", "retries", "checks", "temperature")
    try:
        return generate_rationales(
            items,
            answers,
            backend,
            template,
            cache,
            *(asking[name] for name in names),
            max_new_tokens=asking["max_new_tokens"],
            seed=asking["seed"],
            limit=asking["limit"],
            progress=asking["progress"],
            summary=summary,
        )
    finally:
        backend.close()


def _finished_cache(cache: RationaleCache, items, limit: int | None, imported: bool = False) -> bool:
    """Whether an earlier run filled ``cache`` and recorded its summary: it holds a row for every item asked
    about (the first ``limit``; for an import, the caller knows copying wrote nothing new). Such a run is left
    as it is: nothing is asked, and neither the cache nor its summary is written."""
    if cache.torn or not cache.path.with_name("train.summary.json").is_file():
        return False
    return imported or sum(1 for item in items if item.idx in cache) >= min(len(items), limit or len(items))


def _result(cache: RationaleCache, torn: bool, max_examples, subset_seed, selected, selection, fraction) -> dict:
    """The run's record (``train.summary.json``), before the counts of its ``RunSummary``; ``provenance`` is
    this process's (a cache left as an earlier run finished it keeps that run's record)."""
    return {
        "cache": str(cache.path),
        "torn_row_removed": torn,
        "teacher": cache.teacher,
        "prompt_id": cache.prompt_id,
        "rows_in_cache": len(cache),
        "rationales_in_cache": sum(1 for r in cache.rows.values() if r.get("rationale")),
        "max_examples": max_examples or None,
        "subset_seed": subset_seed if max_examples else None,
        "selected_examples": selected,  # original examples in the subset (MultiRC: questions); None: all
        "selection": selection if max_examples else None,
        "validation_fraction": fraction or None,
        "provenance": provenance(),
    }


def make_rationales(
    task: str | None = None,
    train_file: str | Path | None = None,
    columns=None,
    data_dir: str | Path | None = None,
    teacher: str | None = None,
    gguf_file: str | None = None,
    base_url: str | None = None,
    import_file: str | Path | None = None,
    id_column: str | None = None,
    rationale_column: str = "rationale",
    output: str | Path | None = None,
    prompt_mode: str = "label",
    template_file: str | Path | None = None,
    batch_size: int = 8,
    concurrency: int = 8,
    timeout: float = 120.0,
    max_retries: int = 4,
    api_key_env: str = "OPENAI_API_KEY",
    policy: str = "retry",
    retries: int = 2,
    checks: Sequence[str] = CHECKS,
    temperature: float = 0.0,
    max_new_tokens: int = 160,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    max_examples: int | None = None,
    subset_seed: int = 42,
    encoding: str | None = None,
    instruction: str | None = None,
    validation_fraction: float | None = None,
    selection: str = "seeded",
) -> tuple[Path, dict]:
    """Rationales for every training example of ``task`` (or ``train_file``) into a resumable cache:
    from a local model (``teacher`` without ``base_url``), an OpenAI-compatible server (``base_url`` and
    ``teacher`` as the served model name), or a file the user has (``import_file``). ``max_examples`` asks
    only about the examples ``dhrd train --max-train-examples N --subset-seed S`` trains on (one task or
    file at a time). Returns the cache file (``<output>/<Task or file stem>/train.jsonl``, which
    ``dhrd train --rationales <output>`` reads) and the summary, also written beside it as
    ``train.summary.json``. A training file's rows are keyed by ``columns.id`` (the user's ids) or else by
    their 1-based row number; ``id_column`` is the imported file's id column [default: ``columns.id``, else
    ``idx``]. A training file's labels are named by ``columns.label_map`` and its task stated by
    ``instruction``: the teacher is asked about them, never about bare numbers. A training file has
    ``validation_fraction`` of its rows held out as ``dhrd train`` holds them out when it has no validation file
    (pass 0 where training gets a ``--validation-file``): the teacher is never asked about them.
    ``selection`` (``seeded`` or ``first``) is the rows ``max_examples`` takes, as training's ``--selection``."""
    from ..data.tasks import TASKS, parse_task_names
    from ..runtime import write_json_atomic
    from .prompts import (
        TASK_ANSWERS,
        builtin_template,
        check_teacher_labels,
        file_items,
        file_titles,
        load_template,
        task_items,
    )

    if (task is None) == (train_file is None):
        raise DHRDInputError("give either a task or a training file")
    asking = dict(batch_size=batch_size, concurrency=concurrency, timeout=timeout, max_retries=max_retries)
    asking.update(policy=policy, retries=retries, checks=checks, temperature=temperature, seed=seed)
    asking.update(max_new_tokens=max_new_tokens, limit=limit, progress=progress)
    numbers = dict(batch_size=batch_size, concurrency=concurrency, timeout=timeout, max_retries=max_retries)
    numbers.update(retries=retries, temperature=temperature, max_new_tokens=max_new_tokens, limit=limit)
    _check_options(train_file, data_dir, import_file, template_file, output, max_examples, **numbers)
    if train_file is not None:
        columns = columns or Columns()
        if isinstance(train_file, DatasetSplit) and not columns.label_map:  # a ClassLabel names its values
            columns = replace(columns, label_map=train_file.label_map(columns.label))
        items, answers = file_items(train_file, columns, encoding, instruction)
        folder, fields = table_source(train_file).stem, ["text", "text_pair", "question"]
        keyed_by = f"their {columns.id!r} column" if columns.id else "their 1-based row number (or --id-column)"
    else:
        names = parse_task_names(task)
        if len(names) != 1:
            raise DHRDInputError("one task at a time: run the command once per task")
        task = names[0]
        items, _ = task_items(task, data_dir)
        answers, folder = TASK_ANSWERS[task], TASKS[task].folder
        fields = sorted({key for item in items for key in item.fields})
        keyed_by = "the records' idx"
    import_ids = id_column or (columns.id if train_file is not None and columns.id else "idx")
    known = {item.idx for item in items}  # every id: a cache made for a larger subset stays usable
    selected, chosen = None, {}
    if max_examples and import_file is not None:
        raise DHRDInputError("--max-examples picks whom a teacher is asked about; --import copies every row")
    if validation_fraction is None:  # as dhrd train: a training file without a validation file has one carved
        validation_fraction = DEFAULT_VALIDATION_FRACTION if train_file is not None else 0.0
    if not 0 <= validation_fraction < 1:
        raise DHRDInputError(f"--validation-fraction must be between 0 and 1, not {validation_fraction}")
    if import_file is None:  # what stops a teacher run stops it before the row choice is printed: one line
        if not teacher:
            raise DHRDInputError("give --teacher (a local model, or the served model's name with --base-url)")
        if train_file is not None:
            check_teacher_labels(train_file, columns, list(answers))
        items, selected, chosen = training_subset(
            items,
            task,
            train_file,
            columns,
            data_dir,
            max_examples,
            subset_seed,
            encoding,
            validation_fraction,
            selection,
        )
        logger.info("rows asked about: %s; ids %s", chosen["selection_reason"], chosen["asked_ids"])
        if not max_examples:
            selected = None

    finished = False  # an earlier run filled the cache: this one asks, copies and writes nothing
    if import_file is not None:
        source = Path(import_file)
        if source.is_dir():
            source = source / folder / "train.jsonl"
        if not source.is_file():
            raise DHRDInputError(f"{source}: rationale file not found")
        name, prompt_id = import_identity(source, encoding)
        directory = Path(output) if output else Path("rationales") / f"{teacher_slug(name)}--{prompt_id}"
        cache = RationaleCache(directory / folder / "train.jsonl", name, prompt_id, known)
        torn = cache.torn
        policy = "drop" if policy == "drop" else "keep"
        label_name = columns.label_name if train_file is not None else id_key
        summary = import_rationales(
            source,
            items,
            answers,
            cache,
            import_ids,
            rationale_column,
            policy,
            encoding=encoding,
            keyed_by=keyed_by,
            label_name=label_name,
        )
    else:
        template = (
            load_template(template_file, prompt_mode, fields, encoding)
            if template_file
            else builtin_template(prompt_mode)
        )
        if train_file is not None:  # the task's question and label names are part of what the teacher is asked
            question = items[0].fields["question"] if items else None
            asked = json.dumps([question, list(answers), file_titles(columns)]).encode()
            template = replace(template, prompt_id=f"{template.prompt_id}-{hashlib.sha256(asked).hexdigest()[:8]}")
        name = teacher_name(teacher, gguf_file, base_url)
        directory = Path(output) if output else Path("rationales") / f"{teacher_slug(name)}--{template.prompt_id}"
        cache = RationaleCache(directory / folder / "train.jsonl", name, template.prompt_id, known)
        torn = cache.torn
        finished = _finished_cache(cache, items, limit)
        if finished:  # decided before the teacher loads: nothing is asked
            summary = RunSummary(examples=len(items), already_cached=sum(1 for item in items if item.idx in cache))
        else:
            summary = RunSummary()
            started = time.perf_counter()
            try:
                _ask_teacher(
                    items, answers, template, cache, teacher, gguf_file, base_url, api_key_env, summary, **asking
                )
            except KeyboardInterrupt:  # what was written is counted and recorded, then the run stops
                summary.seconds = summary.seconds or time.perf_counter() - started
                result = _result(cache, torn, max_examples, subset_seed, selected, selection, validation_fraction)
                result.update(chosen, **summary.as_dict(), interrupted=True)
                write_json_atomic(cache.path.with_name("train.summary.json"), result)
                raise RationalesInterrupted(cache.path, result) from None
    if import_file is not None:  # copying wrote nothing new: the import was finished before
        finished = not summary.written and _finished_cache(cache, items, limit, imported=True)
    result = _result(cache, torn, max_examples, subset_seed, selected, selection, validation_fraction)
    result.update(chosen, **summary.as_dict(), interrupted=False)
    if finished:  # the summary of the run that filled the cache is kept
        logger.info("already complete: %d rows in %s (another --output asks again)", len(cache), cache.path)
    else:
        write_json_atomic(cache.path.with_name("train.summary.json"), result)
    return cache.path, result


# reproduction and earlier code import these from here
__all__ = ["RationalesInterrupted", "make_rationales", "teacher_slug"]
