"""Teachers that write rationales, behind one small interface, and the resumable run that caches them.

* ``LocalTeacher``: a transformers causal LM (hub name, directory or GGUF file), batched generation with
  left padding and the KV cache, bf16 where the CPU supports it.
* ``OpenAITeacher``: any OpenAI-compatible server (vLLM, Ollama, llama.cpp, OpenAI) through the official
  ``openai`` client, N requests in flight; the client retries timeouts, 429 and 5xx with back-off.
* ``import_rationales``: rationales the user already has (CSV/JSONL), matched by example id.

``generate_rationales`` asks the teacher for every example the cache does not have yet, checks each answer
(``prompts.check_output``), retries, drops or keeps the bad ones as the policy says, and appends each
final row to the cache the moment it is known.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from ..checks import above, at_least, input_dir, input_file, input_path, output_dir
from ..data.datasets_input import DatasetSplit
from ..data.inputs import DEFAULT_VALIDATION_FRACTION, Columns
from ..data.rationales import RationaleCache
from ..data.tables import id_key, is_missing, iter_table, table_source
from ..errors import DHRDInputError, where
from ..provenance import provenance
from .prompts import CHECKS, POLICIES, Checked, PromptTemplate, TeacherItem, check_output

logger = logging.getLogger(__name__)


@dataclass
class Generation:
    text: str | None
    completion_tokens: int = 0
    finish_reason: str | None = None


@dataclass
class Request:
    item: TeacherItem
    messages: list[dict]
    attempt: int = 0


class Teacher:
    """Turns chat requests into generations, yielding ``(request, generation)`` in completion order."""

    name: str

    def generate(self, requests: Sequence[Request], temperature: float, max_new_tokens: int, seed: int):
        raise NotImplementedError

    def close(self) -> None:
        pass


def teacher_slug(name: str) -> str:
    """A file-system-safe name for cache folders."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.rstrip("/").split("/")[-1]).strip("_") or "teacher"


def teacher_name(model: str, gguf_file: str | None = None, base_url: str | None = None) -> str:
    """The name a teacher's rows are recorded under (and its cache folder named by): known before it loads."""
    return f"openai:{model}" if base_url else f"local:{teacher_slug(gguf_file or model)}"


# ------------------------------------------------------------------------------------------ local model
class LocalTeacher(Teacher):
    """A local causal LM decoding through ``generation.generate_batches``: each batch's rows are yielded the
    moment the batch finishes, so the run appends them to its cache before the next batch is decoded."""

    def __init__(self, model: str, gguf_file: str | None = None, batch_size: int = 8, bf16: bool | None = None):
        import torch

        from ..modeling import load_causal_lm, load_tokenizer, resolve_backbone
        from ..runtime import bf16_supported

        path = resolve_backbone(model, gguf_file)
        self.name = teacher_name(model, gguf_file)
        self.bf16 = bf16_supported() if bf16 is None else bf16
        self.tokenizer = load_tokenizer(path)
        # Plain bf16 weights (not autocast): half the memory traffic per decoded token, which is the cost.
        self.model, _ = load_causal_lm(path, dtype=torch.bfloat16 if self.bf16 else torch.float32)
        self.model.eval()
        self.batch_size = batch_size

    def generate(self, requests, temperature, max_new_tokens, seed):
        from .generation import chat_prompt_ids, generate_batches

        prompts = [chat_prompt_ids(self.tokenizer, r.messages) for r in requests]
        batches = generate_batches(
            self.model,
            self.tokenizer,
            prompts,
            batch_size=self.batch_size,
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature,
            seed=seed,
        )
        for batch in batches:
            for i, output in zip(batch.indices, batch.outputs):
                finish = "stop" if output.stopped else "length"
                yield requests[i], Generation(output.text, output.new_tokens, finish)


# ---------------------------------------------------------------------------------------------- server
class OpenAITeacher(Teacher):
    """Chat completions from an OpenAI-compatible server. The key is read from ``api_key_env`` (servers
    that need none accept any value). The official client retries connection errors, timeouts, 408, 409,
    429 and 5xx with exponential back-off; any other 4xx stops the run with the server's message."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 4,
    ):
        import openai

        self.openai = openai
        self.base_url, self.model = base_url, model
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get(api_key_env) or "not-needed",
            timeout=timeout,
            max_retries=max_retries,
        )
        self.concurrency = max(1, concurrency)
        self.name = teacher_name(model, base_url=base_url)

    def _one(self, request: Request, temperature: float, max_new_tokens: int, seed: int) -> Generation:
        openai = self.openai
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=request.messages,
                temperature=temperature,
                max_tokens=max_new_tokens,
                seed=seed,
            )
        except openai.APITimeoutError:
            raise DHRDInputError(
                f"{self.base_url}: request for example {request.item.idx} timed out after every retry "
                "(raise --timeout, or lower --concurrency)"
            ) from None
        except openai.APIConnectionError as error:
            raise DHRDInputError(f"{self.base_url}: cannot reach the server ({error.__cause__ or error})") from None
        except openai.APIStatusError as error:
            raise DHRDInputError(
                f"{self.base_url}: HTTP {error.status_code} for example {request.item.idx}: {_server_message(error)}"
            ) from None
        choices = getattr(response, "choices", None)
        if not choices:
            return Generation(None, 0, "no_choice")
        content = getattr(choices[0].message, "content", None)
        usage = getattr(response, "usage", None)
        tokens = getattr(usage, "completion_tokens", None) or 0
        return Generation(content if isinstance(content, str) else None, tokens, choices[0].finish_reason)

    def generate(self, requests, temperature, max_new_tokens, seed):
        pending = iter(requests)
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {}

            def submit() -> bool:
                request = next(pending, None)
                if request is None:
                    return False
                futures[pool.submit(self._one, request, temperature, max_new_tokens, seed)] = request
                return True

            while len(futures) < self.concurrency and submit():
                pass
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        request = futures.pop(future)
                        yield request, future.result()
                        submit()
            finally:
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        self.client.close()


def _server_message(error) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        return str(inner)[:300]
    return str(error)[:300]


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class RunSummary:
    examples: int = 0
    already_cached: int = 0
    written: int = 0
    outcomes: Counter = field(default_factory=Counter)  # ok / kept / dropped
    problems: Counter = field(default_factory=Counter)  # each check that failed, on every attempt
    final_problems: Counter = field(default_factory=Counter)  # problems of the rows as written
    retries: int = 0
    teacher_answers: int = 0
    teacher_agrees: int = 0
    requests: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "examples": self.examples,
            "already_cached": self.already_cached,
            "written": self.written,
            "outcomes": dict(self.outcomes),
            "problems_seen": dict(self.problems),
            "problems_in_written_rows": dict(self.final_problems),
            "retries": self.retries,
            "teacher_answers": self.teacher_answers,
            "teacher_agreement": round(self.teacher_agrees / self.teacher_answers, 4) if self.teacher_answers else None,
            "requests": self.requests,
            "generated_tokens": self.generated_tokens,
            "seconds": round(self.seconds, 2),
            "rows_per_second": round(self.written / self.seconds, 3) if self.seconds else None,
            "generated_tokens_per_second": round(self.generated_tokens / self.seconds, 2) if self.seconds else None,
        }


def _row(
    item: TeacherItem, checked: Checked, generation: Generation | None, outcome: str, attempts: int, answers
) -> dict:
    said = checked.teacher_answer
    return {
        "idx": item.idx,
        "label": item.label,
        "rationale": checked.rationale if outcome != "dropped" else None,
        "teacher_label": answers.get(said, said) if isinstance(answers, dict) else said,
        "status": outcome,
        "problems": checked.problems,
        "attempts": attempts,
        "output": generation.text if generation else None,
    }


def generate_rationales(
    items: Sequence[TeacherItem],
    answers: Sequence[str],
    teacher: Teacher,
    template: PromptTemplate,
    cache: RationaleCache,
    policy: str = "retry",
    retries: int = 2,
    checks: Iterable[str] = CHECKS,
    temperature: float = 0.0,
    retry_temperature: float = 0.7,
    max_new_tokens: int = 160,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    summary: RunSummary | None = None,
) -> RunSummary:
    """Fill ``cache`` with a rationale row for every item it lacks. Rows are appended as they become final;
    bad answers are re-asked (sampled, ``retry_temperature``) up to ``retries`` times under ``retry``,
    dropped under ``drop``, kept with their problems listed under ``keep``. ``summary``, where given, is
    filled as rows are written, so that a caller interrupted mid-run still holds the counts so far."""
    if policy not in POLICIES:
        raise DHRDInputError(f"unknown policy {policy!r}: choose from {', '.join(POLICIES)}")
    checks = tuple(checks)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise DHRDInputError(f"unknown check {', '.join(unknown)}: choose from {', '.join(CHECKS)}")
    summary = summary if summary is not None else RunSummary()
    summary.examples = len(items)
    todo = [item for item in items if item.idx not in cache]
    summary.already_cached = len(items) - len(todo)
    if limit is not None:
        todo = todo[: max(0, limit - summary.already_cached)]
    requests = [Request(item, template.messages(item, answers)) for item in todo]
    start = time.perf_counter()
    # the bar counts the rows the cache held already, and its rate and estimate only the rows made now
    bar = tqdm(
        total=summary.already_cached + len(requests),
        initial=summary.already_cached,
        desc=f"rationales ({teacher.name})",
        unit="row",
        disable=not progress,
    )
    # the bar closes on an error too, so that the error's one line starts a line of its own
    with bar, cache:
        while requests:
            again = []
            attempt = requests[0].attempt  # every request of a round is on the same attempt
            temp = temperature if attempt == 0 else retry_temperature
            # a new seed per round, so that a second retry does not sample the first retry's answer again
            for request, generation in teacher.generate(requests, temp, max_new_tokens, seed + 1_000_003 * attempt):
                summary.requests += 1
                summary.generated_tokens += generation.completion_tokens
                checked = check_output(
                    generation.text, request.item, answers, template.sentinel, checks, generation.finish_reason
                )
                summary.problems.update(checked.problems)
                if checked.teacher_answer is not None and request.attempt == 0:
                    summary.teacher_answers += 1
                    summary.teacher_agrees += checked.teacher_answer == request.item.answer
                blocking = checked.problems
                if blocking and policy == "retry" and request.attempt < retries:
                    summary.retries += 1
                    again.append(Request(request.item, request.messages, request.attempt + 1))
                    continue
                if not blocking:
                    outcome = "ok"
                elif policy == "keep" and "empty" not in checked.problems:
                    outcome = "kept"
                else:
                    outcome = "dropped"
                cache.append(_row(request.item, checked, generation, outcome, request.attempt + 1, answers))
                summary.written += 1
                summary.outcomes[outcome] += 1
                summary.final_problems.update(checked.problems)
                summary.seconds = time.perf_counter() - start
                bar.update(1)
                bar.set_postfix(tok_s=f"{summary.generated_tokens / max(summary.seconds, 1e-9):.1f}", refresh=False)
            requests = again
    summary.seconds = time.perf_counter() - start
    return summary


class RationalesInterrupted(KeyboardInterrupt):
    """Ctrl-C during a teacher run: the cache keeps every row written, and ``summary`` (also written as
    ``train.summary.json``, marked ``interrupted``) counts them."""

    def __init__(self, path: Path, summary: dict):
        super().__init__()
        self.path, self.summary = path, summary


# --------------------------------------------------------------------------------------------- import
def import_rationales(
    source: str | Path,
    items: Sequence[TeacherItem],
    answers: Sequence[str],
    cache: RationaleCache,
    id_column: str = "idx",
    rationale_column: str = "rationale",
    policy: str = "keep",
    checks: Iterable[str] = ("empty", "repetitive", "leak"),
    encoding: str | None = None,
    keyed_by: str = "their idx",
    label_name=id_key,
) -> RunSummary:
    """Copy a file of rationales the user already has into ``cache``, matched by example id. There is no
    teacher to ask again, so ``retry`` keeps what it can (like ``keep``); ``drop`` drops flagged rows.
    ``label_name`` reads the file's ``label`` values as the items' label names (``Columns.label_name``)."""
    source = Path(source)
    by_id = {id_key(item.idx): item for item in items}
    labels = {item.label for item in items}
    summary = RunSummary(examples=len(items))
    start = time.perf_counter()
    with cache:
        for number, row in iter_table(source, encoding):
            for name in (id_column, rationale_column):
                if name not in row:
                    raise DHRDInputError(f"{where(source, number, name)}: missing column")
            idx = "" if is_missing(row[id_column]) else id_key(row[id_column])
            if idx not in by_id:
                raise DHRDInputError(
                    f"{where(source, number, id_column)}: id {idx!r} is not in the data (its rows are keyed by "
                    f"{keyed_by}): the rationale would be paired with the wrong example"
                )
            if idx in cache:
                summary.already_cached += 1
                continue
            item = by_id[idx]
            said = row.get("label")
            said = None if is_missing(said) else label_name(said)
            if said in labels and said != item.label:
                raise DHRDInputError(
                    f"{where(source, number, 'label')}: says id {idx!r} has label {said!r}, but the data "
                    f"says {item.label!r}: is the file keyed by something other than {keyed_by}?"
                )
            text = row[rationale_column]
            checked = check_output(text if isinstance(text, str) else None, item, answers, sentinel="\0", checks=checks)
            outcome = (
                "ok" if not checked.problems else ("dropped" if policy == "drop" or not checked.rationale else "kept")
            )
            cache.append(_row(item, checked, None, outcome, 0, answers) | {"output": text})
            summary.written += 1
            summary.outcomes[outcome] += 1
            summary.final_problems.update(checked.problems)
    summary.seconds = time.perf_counter() - start
    return summary


def import_identity(source: str | Path, encoding: str | None = None) -> tuple[str, str]:
    """The teacher and prompt id an imported file declares in its first row (the reference set does), or a
    name made from the file."""
    first = next((row for _, row in iter_table(source, encoding)), {})
    teacher = first.get("teacher") or f"import:{Path(source).stem}"
    return str(teacher), str(first.get("prompt_id") or "imported")


# ------------------------------------------------------------------------------------------------- API
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


def describe_ids(ids: Sequence, shown: int = 8) -> str:
    """A list of row ids as a person reads it: ``1, 2, 5, ..., 4997`` (the first ones and the last)."""
    ids = [str(i) for i in ids]
    if len(ids) <= shown:
        return ", ".join(ids)
    return ", ".join(ids[: shown - 1]) + ", ..., " + ids[-1]


def training_subset(
    items: list[TeacherItem],
    task: str | None,
    train_file: str | Path | None,
    columns: Columns,
    data_dir: str | Path | None,
    max_examples: int | None,
    subset_seed: int,
    encoding: str | None = None,
    validation_fraction: float | None = None,
    selection: str = "seeded",
) -> tuple[list[TeacherItem], int, dict]:
    """The items of the examples ``dhrd train`` trains on with the same settings, how many original examples
    that is, and a record of which rows they are and why. A training file given without a validation file
    has ``validation_fraction`` of its rows carved out as the validation split exactly as training carves it
    (seeded by ``subset_seed``, stratified): the teacher is never asked about them. ``max_examples`` then takes
    the rows ``--max-train-examples N --subset-seed S --selection first|seeded`` takes. Training's own rows and
    ``sample_examples`` pick them, and an item joins on the row's ``source_idx``, exactly as training joins
    rationales (``pair_rationales``)."""
    from ..data.inputs import DataSpec
    from ..data.tasks import sample_examples

    if max_examples and subset_seed is None and selection == "seeded":  # a None seed: a fresh random subset
        raise DHRDInputError("--max-examples needs --subset-seed (dhrd train's default is its --seed, 42)")
    carving = bool(validation_fraction) and train_file is not None and not isinstance(train_file, DatasetSplit)
    if isinstance(train_file, DatasetSplit):  # training reads the same split of the same dataset
        spec = DataSpec(
            dataset=train_file.name,
            dataset_config=train_file.config,
            text_column=columns.text,
            text_pair_column=columns.text_pair,
            label_column=columns.label,
            id_column=columns.id,
            label_map=dict(columns.label_map) or None,
        )
    elif train_file is not None:
        spec = DataSpec(
            train_file=str(train_file),
            text_column=columns.text,
            text_pair_column=columns.text_pair,
            label_column=columns.label,
            id_column=columns.id,
            encoding=encoding,
            label_map=dict(columns.label_map) or None,
            validation_fraction=validation_fraction if carving else None,
            validation_seed=subset_seed if subset_seed is not None else 42,
        )
    else:
        # groups (what the cap counts) are the same in both input formats, so yesno stands for either
        spec = DataSpec(tasks=[task], data_dir=None if data_dir is None else str(data_dir))
    every = spec.split("train", spec.label_names())
    rows = sample_examples(every, max_examples, subset_seed, selection)
    keep = {id_key(row.source_idx) for row in rows}
    chosen = [item for item in items if id_key(item.idx) in keep]
    held = spec.carved_splits(spec.label_names())[1] if carving else []
    why = []
    if carving:
        why.append(
            f"{len(held)} rows ({validation_fraction:g}) are held out as the validation split, as dhrd train "
            f"carves it (--validation-fraction {validation_fraction:g}, --subset-seed {spec.validation_seed}), "
            "and never asked about"
        )
    groups = len({row.group for row in rows})
    if max_examples and len(rows) < len(every):
        how = (
            f"the first {max_examples} training rows in file order (--selection first)"
            if selection == "first"
            else f"a seeded sample of {max_examples} (--subset-seed {subset_seed})"
        )
        why.append(f"of the {len(every)} training rows, {how}, as dhrd train --max-train-examples {max_examples} takes")
    else:
        why.append(f"every training row ({groups})")
    record = {
        "selection_reason": "; ".join(why),
        "asked_ids": describe_ids([item.idx for item in chosen]),
        "held_out_for_validation": len(held),
    }
    return chosen, groups, record


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
