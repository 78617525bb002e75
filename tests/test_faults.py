"""Fault injection (issue "Reliability, round 2", item 6): ``kill -9`` at 5 seeded random moments each of
``dhrd rationales``, ``dhrd train``, ``dhrd reproduce`` and ``dhrd predict`` (JSONL, CSV and Parquet), and a
full disk while a rationale cache or a prediction file is written. Round 3 (issue 26): ``kill -9`` at 5 moments
of a rerun of a finished ``predict``, ``rationales``, ``train`` and ``export``, which must leave every finished
file as the unbroken run wrote it.

Each command runs as the real CLI (``python -m dhrd``) in its own process group, on the tiny model and tiny
data, so an unbroken run takes seconds. An unbroken reference run comes first and records when its work
became visible (a file the command writes once it is past start-up) and when its output was complete; each
trial starts the same command from scratch, waits for the same sign of work, then for a delay drawn
uniformly (seeded) from the reference's working time between the two, and sends SIGKILL to the process
group. The same command then runs to completion, and its final state is compared with the reference: no
duplicate or torn rows, the same rows, scores, predictions (and, for training, weights). Kills that landed
after the output was complete (timing differs from run to run), or after the process had ended, are
counted apart.

The full-disk tests mount a 256 KiB tmpfs (skipped, with the reason, where ``mount`` is not allowed).

Excluded from the default run: ``python -m pytest tests/test_faults.py -m faults -s`` runs them and prints a
``faults: ...`` line of counts per command."""

from __future__ import annotations

import contextlib
import csv
import json
import random
import shutil
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl
from faults_support import (
    DIE_INSIDE_ATOMIC_WRITE,
    Tally,
    cli_env,
    error_lines,
    kill_at_random,
    remount,
    run,
    run_reference,
    small_tmpfs,
    stray_temp_files,
    teacher_server,
    whole_jsonl_rows,
)

pytestmark = pytest.mark.faults

TRIALS = 5
WORDS = ["good", "great", "fine", "bad", "awful", "poor"]
SUMMARY: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def closing_note():
    yield
    if SUMMARY:
        print("\n" + "\n".join(SUMMARY))


def report(tally: Tally) -> None:
    SUMMARY.append(tally.line())
    print("\n" + tally.line())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def env(work) -> dict:
    return cli_env(work / "dhrd-cache")  # tracebacks of unexpected errors go here, not to ~/.cache


def delays(name: str, window: float) -> list[float]:
    rng = random.Random(f"faults-{name}")
    return [round(rng.uniform(0.0, window), 3) for _ in range(TRIALS)]


def ok(result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def trial_kill(tally, args, env, cwd, working, complete, delay):
    """One kill; the killed process must have died of SIGKILL or finished cleanly by itself."""
    kill = kill_at_random(args, env, cwd, working, delay)
    tally.kills += 1
    tally.mid_run += kill.mid_run
    tally.work_left += kill.mid_run and not complete()
    assert kill.seen_work or not kill.mid_run, "no sign of work before the kill"
    assert kill.returncode in (-9, 0), kill.stderr[-3000:]
    return kill


# ------------------------------------------------------------------------------------------ rationales
def test_kill_9_rationales(work, env):
    root = work / "rationales"
    root.mkdir()
    rows = [{"text": f"film number {k} was {WORDS[k % 6]}", "label": "pos" if k % 6 < 3 else "neg"} for k in range(48)]
    train = write_jsonl(root / "films.jsonl", rows)
    # a validation file of its own: every training row is asked (without one, a seeded tenth is held out)
    validation = write_jsonl(root / "films-val.jsonl", rows[:6])
    tally = Tally("rationales")
    at_kill, strays = [], []
    with teacher_server(delay=0.06) as url:

        def args(output):
            return ["rationales", "--train-file", train, "--validation-file", validation, "--teacher", "m",
                    "--base-url", url, "--concurrency", "2", "--output", output]  # fmt: skip

        def cache(output):
            return output / "films" / "train.jsonl"

        def complete(output):
            return cache(output).exists() and cache(output).read_bytes().count(b"\n") == 48

        ref = root / "ref"
        reference = run_reference(args(ref), env, root, lambda: cache(ref).exists(), lambda: complete(ref))
        ok(reference.result)
        expected = {r["idx"]: r for r in whole_jsonl_rows(cache(root / "ref"))}
        assert sorted(expected) == list(range(1, 49))
        for k, delay in enumerate(delays("rationales", reference.window)):
            output = root / f"trial-{k}"
            trial_kill(tally, args(output), env, root, lambda o=output: cache(o).exists(),
                       lambda o=output: complete(o), delay)  # fmt: skip
            before = cache(output).read_bytes() if cache(output).exists() else b""
            whole_before = before[: before.rfind(b"\n") + 1]  # a row torn by the kill is cut on resume
            at_kill.append(whole_before.count(b"\n"))
            rerun = run(args(output), env, root)
            ok(rerun)
            tally.reruns_finished += 1
            final = whole_jsonl_rows(cache(output))
            ids = [r["idx"] for r in final]
            assert len(ids) == len(set(ids)), f"duplicate ids: {ids}"
            assert cache(output).read_bytes().startswith(whole_before), "rows written before the kill changed"
            assert {r["idx"]: r for r in final} == expected
            tally.identical += 1
            strays += stray_temp_files(output)
    tally.notes.append(f"rows of 48 in the cache at each kill: {at_kill}")
    tally.notes.append(f"stray temporary files left: {len(strays)}")
    assert not strays, strays
    report(tally)


# ----------------------------------------------------------------------------------------------- train
def _train_state(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    metrics = json.loads((run_dir / "metrics.json").read_text())
    kept = {k: metrics[k] for k in ("score", "tasks", "epochs", "train_rows", "eval_rows")}
    kept["best_checkpoint"] = Path(metrics["best_checkpoint"]).name if metrics["best_checkpoint"] else None
    predictions = json.loads((run_dir / "validation-predictions.json").read_text())
    weights = load_file(str(run_dir / "model" / "model.safetensors"))
    return {"metrics": kept, "predictions": predictions, "weights": weights}


def _progress_of_training(output: Path) -> str:
    if (output / "metrics.json").is_file():
        return "finished"
    steps = [int(p.name.split("-")[1]) for p in (output / "checkpoints").glob("checkpoint-*")]
    return f"checkpoint {max(steps)}" if steps else "no checkpoint"


def _max_weight_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_kill_9_train(work, env, tiny_backbone, superglue_dir):
    root = work / "train"
    root.mkdir()
    tally = Tally("train")

    def args(output):
        return ["train", "--task", "cb", "--data-dir", superglue_dir, "--backbone", tiny_backbone, "--output-dir",
                output, "--no-bf16", "--epochs", "3", "--batch-size", "4", "--max-length", "128", "--save-steps",
                "1"]  # fmt: skip

    def working(output):
        return (output / "train_args.json").exists()  # written just before the first training step

    def complete(output):
        return (output / "metrics.json").exists()

    def same(got, expected, output):
        assert (output / "metrics.json").is_file()
        assert got["metrics"] == expected["metrics"]
        assert got["predictions"] == expected["predictions"]
        assert _max_weight_difference(got["weights"], expected["weights"]) == 0.0

    at_kill = _kills_then_reruns(tally, env, root, "train", args, working, complete, _train_state, same,
                                 _progress_of_training)  # fmt: skip
    tally.notes.append(f"state at each kill (of 27 steps): {at_kill}")
    report(tally)


def _kills_then_reruns(
    tally, env, root: Path, name: str, args, working, complete, state, same, progress, lose=None
) -> list:
    """The unbroken reference run of the command ``args(output)``, then each kill: the command started afresh,
    killed at a seeded random moment, run again to its end, and its final state (``state(output)``) checked
    against the reference's (``same(got, expected, output)``); no stray temporary file left. ``lose(output)``, if
    given, is done between the kill and the rerun (what a new machine would not have). Each trial's folder is
    removed once checked (checkpoints: keep the disk use small). Returns what ``progress(output)`` found at each
    kill."""
    ref = root / "ref"
    reference = run_reference(args(ref), env, root, lambda: working(ref), lambda: complete(ref))
    ok(reference.result)
    expected = state(ref)
    at_kill, strays = [], []
    for k, delay in enumerate(delays(name, reference.window)):
        output = root / f"trial-{k}"
        trial_kill(tally, args(output), env, root, lambda o=output: working(o), lambda o=output: complete(o), delay)
        at_kill.append(progress(output))
        if lose:
            lose(output)
        rerun = run(args(output), env, root)
        ok(rerun)
        tally.reruns_finished += 1
        same(state(output), expected, output)
        tally.identical += 1
        strays += stray_temp_files(output)
        shutil.rmtree(output)
    tally.notes.append(f"stray temporary files left: {len(strays)}")
    assert not strays, strays
    return at_kill


def _search_state(output: Path) -> dict:
    """What a finished ``--alpha auto`` run must have whether or not it was killed: each candidate's dev score at
    each pass, the choice, and the saved model (not the seconds)."""
    from safetensors.torch import load_file

    table = json.loads((output / "alpha-search.json").read_text())
    candidates = {r["candidate"]: (r["state"], r["dev_scores"], r["against_pooled"]) for r in table["candidates"]}
    weights = load_file(str(output / "model" / "model.safetensors"))
    return {"chosen": table["chosen"], "candidates": candidates, "weights": weights}


def _progress_of_search(output: Path) -> str:
    if (output / "metrics.json").is_file():
        return "finished"
    kept = sorted(
        p.parent.name + "/" + p.name for p in (output / "alpha-search" / "checkpoints").glob("*/checkpoint-*")
    )
    return ", ".join(kept) or "no trial checkpoint"


@pytest.mark.parametrize("kept", ["output-dir", "journal"])
def test_kill_9_train_alpha_auto(work, env, tiny_backbone, superglue_dir, kept):
    """``dhrd train --alpha auto`` (optuna; pooled and alpha 1, which the pruner cannot stop: the first two
    trials always finish) killed at random moments, then run again: the same dev scores at every pass, the same
    choice and the same model as the unbroken search, a trial killed past a dev pass resuming from its
    checkpoint; no trial checkpoint is left. ``journal``: the trials kept in a journal outside the output directory
    (``--alpha-search-storage``), and the output directory deleted after each kill (a new machine): the rerun trains
    only the trials the journal does not hold as ended, from their start, to the same result; a kill in the middle
    of a journal write leaves a torn line, which the rerun cuts."""
    root = work / f"train-alpha-auto-{kept}"
    root.mkdir()
    tally = Tally(f"train --alpha auto ({kept})")
    rationales = write_jsonl(
        root / "cb.jsonl", [{"idx": i, "rationale": f"Ann said so on day {i}."} for i in range(12)]
    )

    def journal(output):
        return output.with_name(output.name + "-search.log")

    def args(output):
        storage = ["--alpha-search-storage", journal(output)] if kept == "journal" else []
        return ["train", "--task", "cb", "--data-dir", superglue_dir, "--backbone", tiny_backbone, "--output-dir",
                output, "--no-bf16", "--epochs", "2", "--batch-size", "2", "--max-length", "128", "--alpha", "auto",
                "--alpha-candidates", "0,1", "--lm-scope-candidates", "all", "--rationales", rationales,
                *storage]  # fmt: skip

    def working(output):
        return journal(output).exists() if kept == "journal" else (output / "alpha-search" / "optuna.db").exists()

    torn = []

    def lose(output):
        torn.append(not journal(output).read_bytes().endswith(b"\n"))  # killed in the middle of a journal write
        shutil.rmtree(output, ignore_errors=True)

    def complete(output):
        return (output / "metrics.json").exists()

    def same(got, expected, output):
        assert (got["chosen"], got["candidates"]) == (expected["chosen"], expected["candidates"])
        assert _max_weight_difference(got["weights"], expected["weights"]) == 0.0
        assert not list((output / "alpha-search" / "checkpoints").glob("trial-*"))

    at_kill = _kills_then_reruns(tally, env, root, "train-alpha-auto", args, working, complete, _search_state, same,
                                 _progress_of_search, lose if kept == "journal" else None)  # fmt: skip
    tally.notes.append(f"trial checkpoints at each kill: {at_kill}")
    if kept == "journal":
        tally.notes.append(f"journals left with a torn last line: {sum(torn)} of {len(torn)}")
    report(tally)


# ------------------------------------------------------------------------------------------- reproduce
REPRODUCE_CONFIG = """\
max_train_examples = 8
max_eval_examples = 6
batch_size = 4

[train]
bf16 = false
max_length = 128
save_steps = 1
"""


def _reproduce_state(output: Path) -> dict:
    results = json.loads((output / "results.json").read_text())
    assert results["finished"] is True
    cells = {}
    for name, record in results["cells"].items():
        value = record["result"]
        cells[name] = {k: value[k] for k in ("score", "tasks", "epochs", "train_rows", "eval_rows")}
    task = results["summary"]["tasks"]["cb"]
    predictions = {
        seed: json.loads((output / "cb" / f"pooled-s{seed}" / "validation-predictions.json").read_text())
        for seed in (1, 2)
    }
    return {"cells": cells, "methods": task["methods"], "floor": task.get("floor"), "predictions": predictions}


def test_kill_9_reproduce(work, env, tiny_backbone, superglue_dir):
    root = work / "reproduce"
    root.mkdir()
    config = root / "tiny.toml"
    config.write_text(REPRODUCE_CONFIG)
    tally = Tally("reproduce")

    def args(output):
        return ["reproduce", "--config", config, "--tasks", "cb", "--seeds", "1,2", "--methods", "pooled", "--no-qps",
                "--backbone", tiny_backbone, "--data-dir", superglue_dir, "--epochs", "1", "--output-dir",
                output]  # fmt: skip

    def working(output):
        return (output / "cb").exists()  # the first cell's run directory

    def complete(output):
        try:
            return json.loads((output / "results.json").read_text())["finished"] is True
        except (OSError, ValueError):
            return False

    ref = root / "ref"
    reference = run_reference(args(ref), env, root, lambda: working(ref), lambda: complete(ref))
    ok(reference.result)
    expected = _reproduce_state(root / "ref")
    assert sorted(expected["cells"]) == ["train cb pooled s1", "train cb pooled s2"]
    at_kill, strays = [], []
    for k, delay in enumerate(delays("reproduce", reference.window)):
        output = root / f"trial-{k}"
        trial_kill(tally, args(output), env, root, lambda o=output: working(o), lambda o=output: complete(o), delay)
        done = sum((output / "cb" / f"pooled-s{seed}" / "metrics.json").is_file() for seed in (1, 2))
        at_kill.append(f"{done} cells")
        rerun = run(args(output), env, root)
        ok(rerun)
        tally.reruns_finished += 1
        assert _reproduce_state(output) == expected
        tally.identical += 1
        strays += stray_temp_files(output)
        shutil.rmtree(output)
    tally.notes.append(f"cells finished at each kill (of 2): {at_kill}")
    tally.notes.append(f"stray temporary files left: {len(strays)}")
    assert not strays, strays
    report(tally)


# --------------------------------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def file_model(work, env, tiny_backbone) -> Path:
    """A tiny pooled classifier trained once on a file with an id column."""
    root = work / "file-model"
    root.mkdir()
    reviews = [
        {"id": f"r{k}", "text": f"the film was {WORDS[k % 6]}", "label": "pos" if k % 6 < 3 else "neg"}
        for k in range(18)
    ]
    train = write_jsonl(root / "train.jsonl", reviews[:12])
    validation = write_jsonl(root / "val.jsonl", reviews[12:])
    result = run(["train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone,
                  "--output-dir", root / "run", "--no-bf16", "--epochs", "1", "--batch-size", "4", "--id-column",
                  "id", "--max-length", "64"], env, root)  # fmt: skip
    ok(result)
    return root / "run"


@pytest.fixture(scope="module")
def many_rows(work) -> Path:
    path = work / "many.csv"
    with path.open("w") as handle:
        handle.write("id,text\n")
        for k in range(5000):
            handle.write(f"x{k},the film number {k} was {WORDS[k % 6]}\n")
    return path


def _predict_args(model, rows, output):
    return ["predict", "--model", model, "--file", rows, "--output", output, "--chunk-rows", "64"]


def _prediction_rows(path: Path) -> list:
    """The output's rows, checked whole: JSONL lines all JSON, CSV rows all of the header's width."""
    if path.suffix == ".jsonl":
        return whole_jsonl_rows(path)
    if path.suffix == ".csv":
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n"), f"{path}: torn tail {text[-80:]!r}"
        table = list(csv.reader(text.splitlines()))
        assert all(len(row) == len(table[0]) for row in table), f"{path}: a row of another width"
        return [dict(zip(table[0], row)) for row in table[1:]]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_kill_9_predict(work, env, file_model, many_rows, suffix):
    root = work / f"predict-{suffix}"
    root.mkdir()
    tally = Tally(f"predict {suffix}")

    def progress(output):
        return output.with_name(output.name + ".progress.json")

    def working(output):
        return progress(output).exists()  # the model is loaded and the sink is open

    def complete(output):
        return output.exists() and not progress(output).exists()

    reference_output = root / "ref" / f"p.{suffix}"
    reference = run_reference(
        _predict_args(file_model, many_rows, reference_output),
        env,
        root,
        lambda: working(reference_output),
        lambda: complete(reference_output),
    )
    ok(reference.result)
    expected = _prediction_rows(reference_output)
    assert [r["id"] for r in expected] == [f"x{k}" for k in range(5000)]
    at_kill, strays = [], []
    for k, delay in enumerate(delays(f"predict-{suffix}", reference.window)):
        output = root / f"trial-{k}" / f"p.{suffix}"
        args = _predict_args(file_model, many_rows, output)
        trial_kill(tally, args, env, root, lambda o=output: working(o), lambda o=output: complete(o), delay)
        at_kill.append(json.loads(progress(output).read_text())["rows"] if progress(output).exists() else "done")
        rerun = run(args, env, root)
        ok(rerun)
        tally.reruns_finished += 1
        got = _prediction_rows(output)
        ids = [r["id"] for r in got]
        assert len(ids) == len(set(ids)), "duplicate ids"
        assert got == expected
        if suffix != "parquet":
            assert output.read_bytes() == reference_output.read_bytes()
        left = stray_temp_files(output.parent)
        strays += left
        leftovers = sorted(p.name for p in output.parent.iterdir() if p.name not in (output.name, *left))
        assert leftovers == [], leftovers  # no progress record, no parts left behind
        tally.identical += 1
    tally.notes.append(f"rows recorded of 5000 at each kill: {at_kill}")
    tally.notes.append(f"stray temporary files left: {len(strays)}")
    assert not strays, strays
    report(tally)


# ------------------------------------------------------------------------------------------- full disk
def _tmpfs_or_skip(mounted):
    if mounted is None:
        pytest.skip(f"cannot mount a 256 KiB tmpfs to fill ({small_tmpfs.reason}); needs root or CAP_SYS_ADMIN")
    return mounted


def _one_error_line(stderr: str, *fragments: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    assert "error:" in lines[0] and "unexpected" not in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _error_stands_alone(stderr: str) -> bool:
    """The error starts a line of its own (not glued to a progress bar) and nothing is printed after it."""
    lines = [p for line in stderr.splitlines() for p in line.split("\r") if p.strip()]
    return bool(lines) and lines[-1].startswith("error:")


def test_full_disk_while_writing_predictions(work, env, file_model, many_rows):
    reference_output = work / "full-disk-predict-ref.jsonl"
    ok(run(_predict_args(file_model, many_rows, reference_output), env, work))
    expected = reference_output.read_bytes()
    assert len(expected) > 256 * 1024  # more than the disk holds
    with small_tmpfs("256k") as mounted:
        disk = _tmpfs_or_skip(mounted)
        output = disk / "p.jsonl"
        args = _predict_args(file_model, many_rows, output)
        result = run(args, env, work)
        assert result.returncode == 2, result.stderr[-3000:]
        _one_error_line(result.stderr, "p.jsonl", "could not write", "predictions before are kept")
        assert _error_stands_alone(result.stderr), result.stderr[-1000:]
        rows = whole_jsonl_rows(output)  # readable: whole rows only
        assert 0 < len(rows) < 5000
        assert expected.startswith(output.read_bytes())  # the first rows of the unbroken output, none twice
        assert remount(disk, "4m"), "could not grow the tmpfs"
        again = run(args, env, work)  # space freed: the same command continues
        ok(again)
        assert output.read_bytes() == expected
        assert sorted(p.name for p in disk.iterdir()) == ["p.jsonl"]
    SUMMARY.append(f"faults: full disk, predict jsonl: exit 2 after {len(rows)} of 5000 rows, one error line, rerun "
                   "with space finished identical")  # fmt: skip


@pytest.fixture(scope="module")
def full_disk_rationales(work, env):
    """``dhrd rationales`` writing its cache to a full 256 KiB tmpfs, then again once the tmpfs is 4 MiB."""
    root = work / "full-disk-rationales"
    root.mkdir()
    rows = [{"text": f"film number {k} was {WORDS[k % 6]}", "label": "pos" if k % 6 < 3 else "neg"} for k in range(300)]
    train = write_jsonl(root / "films.jsonl", rows)
    validation = write_jsonl(root / "films-val.jsonl", rows[:6])  # its own: every training row is asked
    with small_tmpfs("256k") as mounted, teacher_server(padding=3000) as url:  # rows of ~6.5 KB
        if mounted is None:
            yield None
            return
        args = ["rationales", "--train-file", train, "--validation-file", validation, "--teacher", "m", "--base-url",
                url, "--output", mounted / "cache", "--checks", "empty,truncated"]  # fmt: skip
        full = run(args, env, root)
        cache = mounted / "cache" / "films" / "train.jsonl"
        state = {"full": full, "bytes": cache.read_bytes() if cache.exists() else None}
        state["rows"] = whole_jsonl_rows(cache) if cache.exists() else None
        state["grown"] = remount(mounted, "4m")
        state["again"] = run(args, env, root) if state["grown"] else None
        state["final"] = whole_jsonl_rows(cache) if state["again"] is not None else None
        yield state


def test_full_disk_while_writing_the_rationale_cache(full_disk_rationales):
    state = _tmpfs_or_skip(full_disk_rationales)
    full = state["full"]
    assert full.returncode == 2, full.stderr[-3000:]
    _one_error_line(full.stderr, "films/train.jsonl", "could not write", "rows before are kept")
    assert state["bytes"] is not None and state["bytes"].endswith(b"\n")
    ids = [r["idx"] for r in state["rows"]]  # readable: every line whole JSON
    assert 0 < len(ids) < 300 and len(ids) == len(set(ids))
    assert state["grown"], "could not grow the tmpfs"
    ok(state["again"])  # space freed: the same command continues
    final = [r["idx"] for r in state["final"]]
    assert sorted(final) == list(range(1, 301)) and final[: len(ids)] == ids
    SUMMARY.append(f"faults: full disk, rationale cache: exit 2 after {len(ids)} of 300 rows, one error line, rerun "
                   "with space finished with every id once")  # fmt: skip


class ErrorGluedToProgressBar(AssertionError):
    pass


def test_full_disk_rationale_error_stands_on_its_own_line(full_disk_rationales):
    state = _tmpfs_or_skip(full_disk_rationales)
    assert state["full"].returncode == 2
    if not _error_stands_alone(state["full"].stderr):
        raise ErrorGluedToProgressBar(state["full"].stderr[-1000:])


# ------------------------------------------------------------------------------- kill inside an atomic write
class StrayTempFile(AssertionError):
    pass


def test_a_kill_inside_an_atomic_write_leaves_no_stray_file(work, env, file_model, many_rows):
    """Deterministic: the process SIGKILLs itself on the 5th rename of the progress record, with the record's
    temporary file complete. The rerun must still finish with the whole output, and leave nothing behind."""
    root = work / "atomic-kill"
    output = root / "p.jsonl"
    args = _predict_args(file_model, many_rows, output)
    program = [sys.executable, "-c", DIE_INSIDE_ATOMIC_WRITE, "p.jsonl.progress.json", "5"]
    killed = run(args, env, work, program=program)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert stray_temp_files(root), "the kill did not land inside the atomic write"
    ok(run(args, env, work))
    rows = whole_jsonl_rows(output)
    assert [r["id"] for r in rows] == [f"x{k}" for k in range(5000)]
    strays = stray_temp_files(root)
    if strays:
        raise StrayTempFile(f"left beside {output.name} after the rerun: {strays}")


# ----------------------------------------------------------------------- kill -9 during a rerun of a finished run
def _files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` by its bytes (hidden ones too: a directory set aside, a temporary file)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _finished_command(command: str, root: Path, file_model: Path, many_rows: Path, tiny_backbone, stack) -> list:
    """The command whose finished run is rerun; everything it writes goes under ``root``."""
    if command == "predict":
        return _predict_args(file_model, many_rows, root / "out" / "p.jsonl")
    if command == "export":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
        return ["export", "--model", file_model, "--output", root / "export", "--quantize", "int8"]
    if command == "rationales":
        rows = [{"text": f"film number {k} was {WORDS[k % 6]}", "label": ["pos", "neg"][k % 6 // 3]} for k in range(24)]
        train = write_jsonl(root / "films.jsonl", rows)
        url = stack.enter_context(teacher_server())
        return ["rationales", "--train-file", train, "--teacher", "m", "--base-url", url, "--output", root / "cache"]
    reviews = [
        {"id": f"r{k}", "text": f"the film was {WORDS[k % 6]}", "label": "pos" if k % 6 < 3 else "neg"}
        for k in range(18)
    ]
    train, validation = write_jsonl(root / "train.jsonl", reviews[:12]), write_jsonl(root / "val.jsonl", reviews[12:])
    return ["train", "--train-file", train, "--validation-file", validation, "--backbone", tiny_backbone,
            "--output-dir", root / "run", "--no-bf16", "--epochs", "2", "--batch-size", "4", "--max-length",
            "64"]  # fmt: skip


@pytest.mark.parametrize("command", ["predict", "rationales", "train", "export"])
def test_kill_9_during_a_rerun_of_a_finished_run(work, env, file_model, many_rows, tiny_backbone, command):
    """A finished run's outputs, byte for byte, after each kill of the same command run again and after the
    rerun that follows: the rerun leaves them as they are, so no moment of it can lose them."""
    root = work / f"rerun-{command}"
    root.mkdir()
    tally = Tally(f"rerun of a finished {command}")
    with contextlib.ExitStack() as stack:
        args = _finished_command(command, root, file_model, many_rows, tiny_backbone, stack)
        ok(run(args, env, root))  # the unbroken run
        expected = _files(root)
        reference = run_reference(args, env, root, lambda: True, lambda: False)  # a rerun: how long it takes
        ok(reference.result)
        assert "already complete" in reference.result.stdout + reference.result.stderr, reference.result.stdout
        assert _files(root) == expected
        for delay in delays(f"rerun-{command}", reference.window):
            trial_kill(tally, args, env, root, lambda: True, lambda: True, delay)
            assert _files(root) == expected, "a kill of the rerun changed what the finished run wrote"
            rerun = run(args, env, root)
            ok(rerun)
            tally.reruns_finished += 1
            assert _files(root) == expected
            tally.identical += 1
    tally.notes.append(f"a rerun takes {reference.total:.1f} s; kills drawn within it")
    report(tally)
