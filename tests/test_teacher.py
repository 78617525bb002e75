"""Teacher rationales: prompts, the quality filter, the append-only cache, the three teachers and the CLI.

The OpenAI-compatible server here is a small scripted HTTP server: it serves the fast tests of retries,
4xx errors and malformed answers. The real server (llama.cpp) is in test_teacher_server.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import assert_provenance, write_jsonl

from dhrd.data.inputs import Columns
from dhrd.data.rationales import RationaleCache, read_rationales
from dhrd.errors import DHRDInputError
from dhrd.teacher.asking import generate_rationales
from dhrd.teacher.backends import LocalTeacher, OpenAITeacher
from dhrd.teacher.prompts import (
    SENTINEL,
    TeacherItem,
    builtin_template,
    check_output,
    clean_rationale,
    file_items,
    load_template,
    parse_answer,
    task_items,
)
from dhrd.teacher.teachers import make_rationales

ITEM = TeacherItem(0, "entailment", "Yes", "Premise: a\nHypothesis: b", {})
ANSWERS = ("Yes", "No")
GOOD = f"Reasoning: The premise names the museum's city, which is the place in the hypothesis. {SENTINEL}\nAnswer: Yes"


# ------------------------------------------------------------------------------------------- prompts
def test_clean_keeps_only_the_explanation():
    assert clean_rationale(GOOD) == "The premise names the museum's city, which is the place in the hypothesis."
    assert clean_rationale("Because x.\n\nAnswer: Yes") == "Because x."  # no sentinel: cut at the answer
    # the answer first, then the explanation (Qwen2.5-0.5B's habit): the explanation is kept
    assert clean_rationale("Answer: Yes\nExplanation: The passage says so.") == "The passage says so."
    assert clean_rationale("Answer: No\nExplanation: It is not.\nAnswer: No") == "It is not."


@pytest.mark.parametrize(
    "text, problems",
    [
        (GOOD, []),
        (None, ["empty"]),
        ("   ", ["empty"]),
        (f"{SENTINEL}\nAnswer: Yes", ["empty"]),
        ("The premise names the city but then the", ["truncated"]),
        (f"Yes, the premise names the city. {SENTINEL}\nAnswer: Yes", ["leak"]),
        (f"The claim is true since the city is named. {SENTINEL}\nAnswer: Yes", ["leak"]),
        (f"The premise names the city. {SENTINEL}\nAnswer: No", ["contradicts"]),
        (f"{'the city is big and ' * 8}{SENTINEL}\nAnswer: Yes", ["repetitive"]),
    ],
)
def test_quality_checks(text, problems):
    assert check_output(text, ITEM, ANSWERS).problems == problems


def test_no_as_a_determiner_is_not_a_leak():
    text = f"The premise says no women are allowed to take part. {SENTINEL}\nAnswer: Yes"
    assert check_output(text, ITEM, ANSWERS).problems == []
    assert "leak" in check_output(f"No. The text says so. {SENTINEL}", ITEM, ANSWERS).problems


def test_checks_can_be_switched_off():
    text = f"Yes, the premise names the city. {SENTINEL}\nAnswer: No"
    assert check_output(text, ITEM, ANSWERS, checks=("empty", "truncated")).problems == []


@pytest.mark.parametrize(
    "said, expected",
    [("Answer: Yes", "Yes"), ("answer: **yes**.", "Yes"), ("Final Answer: Option 2", "Option 2"), ("Answer: ok", None)],
)
def test_answers_are_parsed_leniently(said, expected):
    assert parse_answer(said, ("Yes", "No", "Option 1", "Option 2")) == expected


def test_builtin_prompts_follow_the_paper():
    system, user = builtin_template("label").messages(ITEM, ANSWERS)
    assert user["content"] == "Premise: a\nHypothesis: b\nAnswer: Yes\nReasoning:"
    rules = system["content"]
    assert SENTINEL in rules and "2-5 sentences" in rules and "step by step" in rules and "Yes, No, True" in rules
    other = builtin_template("label").messages(TeacherItem(1, "x", "No", "Premise: c", {}), ANSWERS)
    assert other[0] == system  # one system turn for every example: a server caches its tokens once
    free = builtin_template("free").messages(ITEM, ANSWERS)
    assert "Answer: Yes" not in free[1]["content"] and "Yes / No" in free[1]["content"]


def test_template_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("system: Be brief.\n---\n{input}\nGold: {answer}. Why? End with {sentinel}")
    template = load_template(path, "label")
    assert template.system == "Be brief."
    assert template.messages(ITEM, ANSWERS)[-1]["content"].startswith("Premise: a")
    assert template.prompt_id.startswith("mine-")
    path.write_text("{input}\nGold: {answer}!")
    assert load_template(path, "label").prompt_id != template.prompt_id  # an edit is a new prompt version


def test_template_with_unknown_placeholder_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("{input}\nGold: {answr}")
    with pytest.raises(DHRDInputError, match=r"bad.txt: row 2: unknown placeholder \{answr\}"):
        load_template(path, "label")


def test_task_items_carry_the_gold_answer(superglue_dir):
    cb, _ = task_items("cb", superglue_dir)
    assert [i.answer for i in cb[:3]] == ["Entailment", "Contradiction", "Neither"]
    copa, _ = task_items("copa", superglue_dir)
    assert copa[1].label == "choice2" and copa[1].answer == "Option 2" and "Option 2: The sun set." in copa[1].input
    rte, _ = task_items("rte", superglue_dir)
    assert {i.answer for i in rte} <= {"Yes", "No"}
    with pytest.raises(DHRDInputError, match="does not support 'record'"):
        task_items("record", superglue_dir)


def _multirc_dir(root: Path) -> Path:
    """Tiny MultiRC files as the official ones are: answer ids unique across the split."""
    rows, answer_idx = [], 0
    for p in range(3):
        questions = []
        for q in range(2):
            answers = []
            for a in range(2 + q):
                answers.append({"text": f"Person {p}{q}{a}", "idx": answer_idx, "label": int(a == q)})
                answer_idx += 1
            questions.append({"question": f"Who came on day {p}{q}?", "idx": q, "answers": answers})
        rows.append({"idx": p, "passage": {"text": f"Person {p}00 came on day {p}.", "questions": questions}})
    write_jsonl(root / "MultiRC" / "train.jsonl", rows)
    return root


def test_multirc_items_are_answers(tmp_path):
    from dhrd.data.task_splits import load_task_split

    data = _multirc_dir(tmp_path)
    items, source = task_items("multirc", data)
    assert [i.idx for i in items] == list(range(15)) and source.endswith("MultiRC/train.jsonl")
    assert [i.label for i in items[:5]] == ["true", "false", "false", "true", "false"]
    assert [i.answer for i in items[:2]] == ["Yes", "No"]
    assert items[1].input == (
        "Paragraph: Person 000 came on day 0.\nQuestion: Who came on day 00?\nCandidate answer: Person 001\n"
        "Question: Is the candidate answer correct?"
    )
    assert items[1].fields == {"paragraph": "Person 000 came on day 0.", "question": "Who came on day 00?",
                               "candidate": "Person 001"}  # fmt: skip
    rows = load_task_split("multirc", "train", "yesno", data)  # the classifier's rows join on the answer idx
    assert [r.source_idx for r in rows] == [i.idx for i in items]
    assert [r.label for r in rows] == [int(i.label == "true") for i in items]


def test_bad_multirc_records_name_the_row_and_field(tmp_path):
    data = _multirc_dir(tmp_path)
    path = data / "MultiRC" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    del rows[1]["passage"]["questions"][0]["answers"][1]["label"]
    write_jsonl(path, rows)
    with pytest.raises(DHRDInputError, match=r"train.jsonl: row 2: field 'passage.questions\[0\].answers\[1\].label'"):
        task_items("multirc", data)
    rows[1]["passage"]["questions"] = []
    write_jsonl(path, rows)
    with pytest.raises(DHRDInputError, match=r"row 2: field 'passage.questions': expected a non-empty list"):
        task_items("multirc", data)


def test_file_items_are_keyed_by_row(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}])
    items, labels = file_items(path, Columns())
    assert [i.idx for i in items] == [1, 2] and labels == {"neg": "neg", "pos": "pos"} and items[0].answer == "pos"


# --------------------------------------------------------------------------------------------- cache
def _row(idx, **extra):
    return {"idx": idx, "label": "entailment", "rationale": f"reason {idx}", **extra}


def test_cache_appends_and_resumes(tmp_path):
    path = tmp_path / "CB" / "train.jsonl"
    with RationaleCache(path, "t", "p") as cache:
        cache.append(_row(0))
        cache.append(_row(1))
    again = RationaleCache(path, "t", "p", known_ids={0, 1, 2})
    assert 0 in again and 1 in again and 2 not in again
    assert read_rationales(path) == {"0": "reason 0", "1": "reason 1"}


def test_cache_cuts_a_torn_last_row_and_keeps_the_rest(tmp_path):
    path = tmp_path / "train.jsonl"
    with RationaleCache(path, "t", "p") as cache:
        cache.append(_row(0))
    with path.open("a") as handle:
        handle.write('{"idx": 1, "label": "entailment", "ratio')  # killed mid-row
    cache = RationaleCache(path, "t", "p")
    assert len(cache) == 1 and cache.torn
    with cache:
        cache.append(_row(2))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["idx"] for line in lines] == [0, 2]


def test_cache_of_another_teacher_is_refused(tmp_path):
    path = tmp_path / "train.jsonl"
    with RationaleCache(path, "teacher-a", "p") as cache:
        cache.append(_row(0))
    before = path.read_bytes()
    with pytest.raises(DHRDInputError, match=r"train.jsonl: row 1: field 'teacher'.*teacher-a"):
        RationaleCache(path, "teacher-b", "p")
    with pytest.raises(DHRDInputError, match="field 'prompt_id'"):
        RationaleCache(path, "teacher-a", "other-prompt")
    assert path.read_bytes() == before


def test_cache_with_ids_not_in_the_data_is_refused(tmp_path):
    path = tmp_path / "train.jsonl"
    with RationaleCache(path, "t", "p") as cache:
        cache.append(_row(77))
    with pytest.raises(DHRDInputError, match="row 1: field 'idx': id 77 is not in the data"):
        RationaleCache(path, "t", "p", known_ids={0, 1})


def test_training_refuses_a_file_mixing_teachers(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [_row(0, teacher="a", prompt_id="p"), _row(1, teacher="b", prompt_id="p")])
    with pytest.raises(DHRDInputError, match="row 2: field 'teacher'"):
        read_rationales(path)


# ------------------------------------------------------------------------------------ scripted server
class Script:
    """What the fake server answers: a function of (request number, request body) -> (status, body)."""

    def __init__(self, reply):
        self.reply = reply
        self.calls = 0
        self.lock = threading.Lock()


def _completion(content, tokens=12, finish="stop"):
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens},
    }


def _good_reply(body):
    user = body["messages"][-1]["content"]
    answer = user.split("Answer: ", 1)[1].split("\n", 1)[0]
    return _completion(f"The text shows it plainly. {SENTINEL}\nAnswer: {answer}")


@pytest.fixture
def server():
    servers = []

    def start(reply, delay: float = 0.0):
        script = Script(reply)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with script.lock:
                    script.calls += 1
                    number = script.calls
                time.sleep(delay)
                status, payload = script.reply(number, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/v1", script

    yield start
    for httpd in servers:
        httpd.shutdown()


def _run_server(url, superglue_dir, tmp_path, **kwargs):
    settings = dict(task="cb", data_dir=superglue_dir, teacher="m", base_url=url, output=tmp_path / "cache")
    settings.update(kwargs)
    settings.setdefault("progress", False)
    return make_rationales(**settings)


def test_server_teacher_fills_the_cache(server, superglue_dir, tmp_path):
    url, script = server(lambda n, body: (200, _good_reply(body)))
    path, summary = _run_server(url, superglue_dir, tmp_path, concurrency=4)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["idx"] for r in rows) == list(range(12))
    assert all(r["status"] == "ok" and r["rationale"] == "The text shows it plainly." for r in rows)
    assert summary["outcomes"] == {"ok": 12} and summary["teacher_agreement"] == 1.0
    assert {r["teacher_label"] for r in rows} == {"entailment", "contradiction", "neutral"}  # mapped back
    assert summary["generated_tokens"] == 12 * 12 and (path.parent / "train.summary.json").is_file()
    assert_provenance(json.loads((path.parent / "train.summary.json").read_text())["provenance"])
    assert path == tmp_path / "cache" / "CB" / "train.jsonl"
    _, again = _run_server(url, superglue_dir, tmp_path)  # everything cached: no request
    assert again["already_cached"] == 12 and again["written"] == 0 and script.calls == 12


def test_rate_limits_and_server_errors_are_retried(server, superglue_dir, tmp_path):
    def flaky(n, body):
        if n % 3 == 1:
            return (429, {"error": {"message": "slow down"}}) if n % 2 else (503, {"error": {"message": "busy"}})
        return 200, _good_reply(body)

    url, _ = server(flaky)
    path, summary = _run_server(url, superglue_dir, tmp_path, concurrency=2, max_retries=3)
    assert summary["outcomes"] == {"ok": 12}


def test_client_error_stops_with_a_clear_message_and_keeps_rows(server, superglue_dir, tmp_path):
    url, _ = server(lambda n, body: (200, _good_reply(body)) if n <= 5 else (400, {"error": {"message": "bad model"}}))
    with pytest.raises(DHRDInputError, match="HTTP 400 for example .*bad model"):
        _run_server(url, superglue_dir, tmp_path, concurrency=1)
    rows = (tmp_path / "cache" / "CB" / "train.jsonl").read_text().splitlines()
    assert len(rows) == 5  # the answers before the error are kept
    url2, _ = server(lambda n, body: (200, _good_reply(body)))
    _, summary = _run_server(url2, superglue_dir, tmp_path)
    assert summary["already_cached"] == 5 and summary["written"] == 7


def test_server_down_is_a_clear_error(superglue_dir, tmp_path):
    with pytest.raises(DHRDInputError, match="cannot reach the server"):
        _run_server("http://127.0.0.1:9/v1", superglue_dir, tmp_path, max_retries=0)


def test_timeout_is_a_clear_error(server, superglue_dir, tmp_path):
    url, _ = server(lambda n, body: (200, _good_reply(body)), delay=2.0)
    with pytest.raises(DHRDInputError, match="timed out"):
        _run_server(url, superglue_dir, tmp_path, timeout=0.3, max_retries=1, concurrency=1)


def test_empty_and_non_text_answers_are_retried_then_dropped(server, superglue_dir, tmp_path):
    def bad(n, body):
        user = body["messages"][-1]["content"]
        if "day 0." in user:
            return 200, _completion(None)  # never text
        if "day 1." in user and n <= 12:
            return 200, _completion("")  # empty at first, fine on a retry
        if "day 2." in user:
            return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
        return 200, _good_reply(body)

    url, _ = server(bad)
    path, summary = _run_server(url, superglue_dir, tmp_path, concurrency=1, retries=2)
    rows = {json.loads(line)["idx"]: json.loads(line) for line in path.read_text().splitlines()}
    assert rows[0]["status"] == "dropped" and rows[0]["rationale"] is None and rows[0]["attempts"] == 3
    assert rows[2]["status"] == "dropped"
    assert summary["outcomes"]["dropped"] == 2 and summary["retries"] >= 4
    assert read_rationales(path).keys() == {str(i) for i in set(range(12)) - {0, 2}}


@pytest.mark.parametrize("policy, status", [("drop", "dropped"), ("keep", "kept"), ("retry", "ok")])
def test_policies_on_a_label_leak(server, superglue_dir, tmp_path, policy, status):
    def leaky(n, body):
        if body.get("temperature", 0) == 0:
            return 200, _completion(f"Yes, the premise says it is so. {SENTINEL}\nAnswer: Entailment")
        return _good_reply_status(body)

    def _good_reply_status(body):
        return 200, _good_reply(body)

    url, _ = server(leaky)
    path, summary = _run_server(url, superglue_dir, tmp_path, policy=policy, limit=3, concurrency=1)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 3 and {r["status"] for r in rows} == {status}
    if policy == "keep":
        assert rows[0]["rationale"] == "Yes, the premise says it is so." and rows[0]["problems"] == ["leak"]


def test_free_prompt_reports_agreement(server, superglue_dir, tmp_path):
    def guess(n, body):
        return 200, _completion(f"The premise says so in plain words. {SENTINEL}\nAnswer: Entailment")

    url, _ = server(guess)
    _, summary = _run_server(url, superglue_dir, tmp_path, prompt_mode="free", policy="keep")
    # 4 of the 12 tiny CB examples are entailments: the rest contradict the gold label
    assert summary["teacher_agreement"] == pytest.approx(4 / 12, abs=1e-4)
    assert summary["outcomes"] == {"ok": 4, "kept": 8}


def test_import_reference_style_file(superglue_dir, tmp_path):
    source = write_jsonl(
        tmp_path / "mine" / "CB" / "train.jsonl",
        [{"idx": i, "rationale": f"Reason {i}.", "teacher": "big-model", "prompt_id": "v7"} for i in range(12)],
    )
    path, summary = make_rationales(
        task="cb", data_dir=superglue_dir, import_file=source.parents[1], output=tmp_path / "c"
    )
    assert summary["teacher"] == "big-model" and summary["prompt_id"] == "v7" and summary["written"] == 12
    assert read_rationales(path)["3"] == "Reason 3."


def test_cli_import_csv_with_own_columns(superglue_dir, tmp_path):
    source = tmp_path / "mine.csv"
    source.write_text("example,why\n" + "".join(f"{i},Because of day {i}.\n" for i in range(12)))
    result = _cli("rationales", "--task", "cb", "--data-dir", str(superglue_dir), "--import", str(source),
                  "--id-column", "example", "--rationale-column", "why", "--output", str(tmp_path / "c"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert read_rationales(tmp_path / "c" / "CB" / "train.jsonl")["5"] == "Because of day 5."
    missing = _cli("rationales", "--task", "cb", "--data-dir", str(superglue_dir), "--import", str(source),
                   "--output", str(tmp_path / "d"))  # fmt: skip
    assert missing.returncode == 2 and "mine.csv: row 1: field 'idx': missing column" in missing.stderr


def test_import_with_unknown_id_names_the_row(superglue_dir, tmp_path):
    source = tmp_path / "r.csv"
    source.write_text("idx,rationale\n0,fine\n999,who\n")
    with pytest.raises(DHRDInputError, match=r"r.csv: row 2: field 'idx': id '999' is not in the data"):
        make_rationales(task="cb", data_dir=superglue_dir, import_file=source, output=tmp_path / "c")


# ----------------------------------------------------------------------------------------- local model
def test_local_teacher_batches_match_batch_one(tiny_backbone, superglue_dir, tmp_path):
    """Left padding and the KV cache: greedy answers in a batch of 4 equal those generated one by one."""
    items, _ = task_items("cb", superglue_dir)
    template = builtin_template("label")
    outputs, counted = {}, {}
    for batch_size in (1, 4):
        teacher = LocalTeacher(str(tiny_backbone), batch_size=batch_size, bf16=False)
        cache = RationaleCache(tmp_path / f"b{batch_size}.jsonl", teacher.name, template.prompt_id)
        summary = generate_rationales(
            items[:6], ("Entailment", "Contradiction", "Neither"), teacher, template, cache,
            policy="keep", max_new_tokens=12, progress=False,
        )  # fmt: skip
        assert summary.written == 6
        outputs[batch_size] = {r["idx"]: r["output"] for r in cache.rows.values()}
        counted[batch_size] = summary.generated_tokens
    assert outputs[1] == outputs[4]
    # the untrained tiny model never ends an answer early: every answer counts the whole 12-token budget
    assert counted[1] == counted[4] == 6 * 12


def test_local_teacher_saves_each_batch_as_it_finishes(tiny_backbone, superglue_dir, tmp_path):
    """A run stopped while its third batch decodes has the first two batches' rows in the cache (fsynced
    before the next batch started), loses only the batch in flight, and a rerun asks only for the rest."""
    items, _ = task_items("cb", superglue_dir)
    template, answers = builtin_template("label"), ("Entailment", "Contradiction", "Neither")

    def run(path, stop_at_batch=None):
        teacher = LocalTeacher(str(tiny_backbone), batch_size=2, bf16=False)
        real, calls = teacher.model.generate, []

        def generate(**kwargs):
            calls.append(len(kwargs["input_ids"]))
            if len(calls) == stop_at_batch:
                assert len(RationaleCache(path, teacher.name, template.prompt_id)) == 2 * (stop_at_batch - 1)
                raise KeyboardInterrupt  # as a kill would, mid-batch
            return real(**kwargs)

        teacher.model.generate = generate
        cache = RationaleCache(path, teacher.name, template.prompt_id)
        generate_rationales(items[:6], answers, teacher, template, cache, policy="keep", max_new_tokens=6,
                            progress=False)  # fmt: skip
        return calls

    path = tmp_path / "killed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run(path, stop_at_batch=3)
    assert len(path.read_text().splitlines()) == 4
    assert run(path) == [2]  # the rerun decodes only the batch that was in flight
    whole = tmp_path / "whole.jsonl"
    assert run(whole) == [2, 2, 2]
    rows = [[json.loads(line) for line in p.read_text().splitlines()] for p in (path, whole)]
    outputs = [{r["idx"]: (r["output"], r["status"]) for r in file} for file in rows]
    assert outputs[0] == outputs[1] and len(outputs[0]) == 6


# ----------------------------------------------------------------------------------------------- CLI
def _cli(*args, **kwargs):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "dhrd", *args], capture_output=True, text=True, env=env, **kwargs)


def test_cli_bad_template_is_one_line_exit_2(superglue_dir, tmp_path):
    bad = tmp_path / "t.txt"
    bad.write_text("{input} {label_word}")
    result = _cli("rationales", "--task", "cb", "--data-dir", str(superglue_dir), "--teacher", "m",
                  "--base-url", "http://127.0.0.1:9/v1", "--template", str(bad))  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown placeholder {label_word}" in result.stderr


def test_cli_server_down_is_one_line_exit_2(superglue_dir, tmp_path):
    url = "http://127.0.0.1:9/v1"
    result = _cli("rationales", "--task", "cb", "--data-dir", str(superglue_dir), "--teacher", "m",
                  "--base-url", url, "--max-retries", "0", "--output", str(tmp_path / "c"))  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot reach the server" in result.stderr


def test_cli_kill_9_loses_nothing_and_resumes(server, superglue_dir, tmp_path):
    url, script = server(lambda n, body: (200, _good_reply(body)), delay=0.15)
    args = ["rationales", "--task", "cb", "--data-dir", str(superglue_dir), "--teacher", "m", "--base-url", url,
            "--concurrency", "2", "--output", str(tmp_path / "c")]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, "-m", "dhrd", *args], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    path = tmp_path / "c" / "CB" / "train.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = [json.loads(line)["idx"] for line in path.read_text().splitlines() if line.strip()]
    assert 3 <= len(before) < 12
    result = _cli(*args)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["idx"] for r in rows) == list(range(12))  # every example once, the first rows untouched
    assert [r["idx"] for r in rows[: len(before)]] == before
    assert "train with: dhrd train --task cb --method dhrd --rationales" in result.stdout


def test_generated_cache_trains_a_dhrd_model(server, superglue_dir, tiny_backbone, tmp_path):
    from conftest import tiny_run

    from dhrd.training.run import train
    from dhrd.training.training_args import DHRDTrainingArguments

    url, _ = server(lambda n, body: (200, _good_reply(body)))
    path, _ = _run_server(url, superglue_dir, tmp_path)
    result = train(
        DHRDTrainingArguments(
            **tiny_run(
                tiny_backbone,
                superglue_dir,
                output_dir=str(tmp_path / "run"),
                method="dhrd",
                rationales=str(path.parents[1]),
            )  # fmt: skip
        )
    )
    assert result.metrics["rows_without_rationale"] == 0


def _candidate_reply(body):
    """A rationale that names the example's candidate answer, so a test can see which row it joins."""
    user = body["messages"][-1]["content"]
    candidate = user.split("Candidate answer: ", 1)[1].split("\n", 1)[0]
    answer = user.split("\nAnswer: ", 1)[1].split("\n", 1)[0]
    return _completion(f"The paragraph speaks of {candidate}. {SENTINEL}\nAnswer: {answer}")


def test_max_examples_asks_only_about_the_training_subset(server, tmp_path):
    from dhrd.data.rationales import pair_rationales
    from dhrd.data.selection import sample_examples
    from dhrd.data.task_splits import load_task_split

    data = _multirc_dir(tmp_path / "data")
    url, script = server(lambda n, body: (200, _candidate_reply(body)))
    path, summary = _run_server(url, data, tmp_path, task="multirc", max_examples=2, subset_seed=7)
    rows = load_task_split("multirc", "train", "yesno", data)
    chosen = sample_examples(rows, 2, 7)  # what dhrd train --max-train-examples 2 --subset-seed 7 trains on
    cached = read_rationales(path)
    assert sorted(cached) == sorted(str(r.source_idx) for r in chosen) and script.calls == len(chosen)
    assert summary["selected_examples"] == 2 and summary["examples"] == len(chosen)
    assert (summary["max_examples"], summary["subset_seed"]) == (2, 7)
    paired = pair_rationales(rows, {"multirc": cached}, "consistent", 0)  # joined by answer idx
    for row, (rationale, _) in zip(rows, paired):
        assert rationale == (f"The paragraph speaks of {row.candidate}." if row in chosen else None)
    _, grown = _run_server(url, data, tmp_path, task="multirc", max_examples=3, subset_seed=7)
    assert grown["already_cached"] == len(chosen)  # a larger cap reuses the cache


def test_max_examples_on_a_file_keys_rows_as_training_does(server, tmp_path):
    from dhrd.data.inputs import file_label_names, load_file_examples
    from dhrd.data.selection import sample_examples

    films = [{"text": f"film {i}", "label": "pos" if i % 2 else "neg"} for i in range(8)]
    train = write_jsonl(tmp_path / "d.jsonl", films)
    url, _ = server(lambda n, body: (200, _good_reply(body)))
    path, summary = make_rationales(train_file=train, teacher="m", base_url=url, output=tmp_path / "c",
                                    max_examples=3, subset_seed=1, progress=False)  # fmt: skip
    rows = load_file_examples(train, Columns(), file_label_names(train, Columns()))
    assert sorted(read_rationales(path)) == sorted(str(r.source_idx) for r in sample_examples(rows, 3, 1))
    assert summary["selected_examples"] == 3
    with pytest.raises(DHRDInputError, match="--import copies every row"):
        make_rationales(train_file=train, import_file=path, output=tmp_path / "i", max_examples=3)


def test_cli_max_examples(server, tmp_path):
    from typer.testing import CliRunner

    from dhrd.cli.commands import app

    data = _multirc_dir(tmp_path / "data")
    url, script = server(lambda n, body: (200, _candidate_reply(body)))
    args = ["rationales", "--task", "multirc", "--data-dir", str(data), "--teacher", "m", "--base-url", url,
            "--output", str(tmp_path / "c"), "--max-examples", "1", "--subset-seed", "3"]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "selected_examples" in result.output
    assert "--max-examples 1, --selection seeded, --subset-seed 3" in result.output
    # exactly the capped examples were asked about and cached: the ones dhrd train --max-train-examples 1
    # --subset-seed 3 trains on (a passage whose seed-3 draw differs from the default seed's)
    from dhrd.data.selection import sample_examples
    from dhrd.data.task_splits import load_task_split

    rows = load_task_split("multirc", "train", "yesno", data)
    chosen = sorted(r.source_idx for r in sample_examples(rows, 1, 3))
    assert chosen != sorted(r.source_idx for r in sample_examples(rows, 1, 42))
    cached = [json.loads(line) for line in (tmp_path / "c" / "MultiRC" / "train.jsonl").read_text().splitlines()]
    assert sorted(r["idx"] for r in cached) == chosen and script.calls == len(chosen)
    for row in cached:  # each rationale is the teacher's answer about its own candidate
        candidate = next(r.candidate for r in rows if r.source_idx == row["idx"])
        assert row["rationale"] == f"The paragraph speaks of {candidate}."


@pytest.mark.integration
def test_shared_multirc_items_join_the_training_rows(shared_superglue):
    from dhrd.data.task_splits import load_task_split

    items, _ = task_items("multirc", shared_superglue)
    rows = load_task_split("multirc", "train", "yesno", shared_superglue)
    assert [i.idx for i in items] == [r.source_idx for r in rows] and len(set(r.source_idx for r in rows)) == 27243


def test_openai_teacher_reads_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    teacher = OpenAITeacher("http://127.0.0.1:9/v1", "m", api_key_env="MY_KEY")
    assert teacher.client.api_key == "sk-test"
    teacher.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield


def test_example_templates_load():
    folder = Path(__file__).resolve().parents[1] / "examples" / "templates"
    templates = sorted(folder.glob("*.txt"))
    assert "short-explanation.txt" in [p.name for p in templates]  # a glob that finds nothing passes nothing
    for path in templates:
        template = load_template(path, "label")
        assert template.system and "{answer}" in template.user
        system, user = template.messages(ITEM, ANSWERS)
        assert system == {"role": "system", "content": template.system}
        assert user["role"] == "user" and ITEM.input in user["content"] and "Yes" in user["content"]
        assert "{" not in user["content"]  # every placeholder filled in
