"""`dhrd push`, `dhrd train --push_to_hub` and `DHRDTrainer.push_to_hub` against a local fake of the hub's HTTP
API (tests/fake_hub.py): huggingface_hub's own HfApi makes the requests. Also the file modes of a saved run."""

import contextlib
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, tiny_run
from fake_hub import TOKEN, FakeHub
from huggingface_hub import ModelCard, constants
from typer.testing import CliRunner

from dhrd import DHRDTrainer, DHRDTrainingArguments, train
from dhrd.cli.commands import app
from dhrd.errors import DHRDInputError
from dhrd.hub import upload_files

runner = CliRunner()
PLACEHOLDER = "<user>/<model>"


@contextlib.contextmanager
def hub_at(url: str):
    """huggingface_hub pointed at ``url`` as ``HF_ENDPOINT`` would (it reads its environment once, at import),
    online (the tests run with HF_HUB_OFFLINE=1), with no token of this machine's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_ENDPOINT", url)
        patch.delenv("HF_HUB_OFFLINE", raising=False)
        patch.delenv("HF_TOKEN", raising=False)
        patch.setattr(constants, "ENDPOINT", url)
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        patch.setattr(constants, "HF_TOKEN_PATH", "/nonexistent/dhrd-tests/hf-token")
        yield


def run(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output.strip()


def fingerprint(folder: Path) -> dict[str, str]:
    """Each file under ``folder`` by its content and time: a push must leave the local model as it was."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).digest(), p.stat().st_mtime_ns) for p in files}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_backbone, superglue_dir):
    """A tiny CB run trained with ``--push_to_hub`` (no repository named: the run directory's name) against a
    fake hub, under umask 0o022. Returns the run directory, its metrics and the hub."""
    out = tmp_path_factory.mktemp("hub") / "cb-tiny"
    settings = tiny_run(tiny_backbone, superglue_dir, learning_rate=1e-3, seed=3)
    earlier = os.umask(0o022)
    try:
        with FakeHub() as hub, hub_at(hub.url):
            result = train(DHRDTrainingArguments(**settings, output_dir=str(out), push_to_hub=True, hub_token=TOKEN))
    finally:
        os.umask(earlier)
    return out, result.metrics, hub


def test_train_push_to_hub_uploads_the_saved_model_folder(trained):
    out, metrics, hub = trained
    model = out / "model"
    # one repository, in the token's namespace, named after the run directory; one commit of the model folder
    assert list(hub.repos) == ["me/cb-tiny"] and hub.commits == {"me/cb-tiny": ["Upload a DHRD classifier (dhrd push)"]}
    sent = hub.files["me/cb-tiny"]
    assert set(sent) == set(upload_files(model))
    # the default linear head: a plain *ForSequenceClassification, no modeling code sent
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= set(sent)
    assert not [name for name in sent if name.endswith(".py")]
    assert not [name for name in sent if "adapter" in name or "checkpoint" in name or name == "training_args.bin"]
    assert sent["model.safetensors"] == (model / "model.safetensors").read_bytes()  # the merged, usable weights
    # Trainer never pushed (no repository created as it was built, no checkpoint pushes): only dhrd's one push
    assert hub.paths == [
        "/api/repos/create",
        "/api/validate-yaml",
        "/api/models/me/cb-tiny/preupload/main",
        "/api/models/me/cb-tiny/commit/main",
    ]
    card = ModelCard(sent["README.md"].decode())
    assert card.data.model_name == "cb-tiny" and 'pipeline("text-classification", model="me/cb-tiny"' in card.text
    assert "trust_remote_code" not in card.text
    assert PLACEHOLDER in (model / "README.md").read_text()  # the local card was not rewritten
    cb = metrics["tasks"]["cb"]
    scored = {r.metric_type: (r.metric_name, r.metric_value) for r in card.data.eval_results}
    assert scored["f1"] == ("macro-F1", round(cb["f1"], 2))
    assert scored["accuracy"] == ("accuracy", round(cb["accuracy"], 2))


def test_saved_files_follow_the_umask(trained):
    """Saved under umask 0o022: folders 0o755, files 0o644 (tempfile's folders are 0o700, safetensors' 0o600)."""
    out, _, _ = trained

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(out / "model") == 0o755
    for path in (out / "model").iterdir():
        assert mode(path) == 0o644, path
    for name in ("metrics.json", "train_args.json", "validation-predictions.json"):
        assert mode(out / name) == 0o644, name


def test_the_model_index_of_an_own_data_model_has_macro_f1(trained):
    """A user's file is scored by accuracy and macro-F1 (``macro_f1``): both in the card's model-index."""
    from dhrd.hub import model_card

    out, _, _ = trained
    config = json.loads((out / "model" / "config.json").read_text())
    config["dhrd"]["data"] = {"train_file": "reviews.csv", "validation_file": "reviews-val.csv", "text_column": "text"}
    metrics = {
        "tasks": {"custom": {"accuracy": 75.0, "macro_f1": 71.4286, "score": 75.0, "examples": 8}},
        "floors": {"custom": {"score": 62.5, "predictor": "always 'pos'"}},
    }
    card = model_card(config, json.loads((out / "train_args.json").read_text()), metrics, model_id="me/reviews")
    scored = {(r.metric_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert scored == {("accuracy", "accuracy"): 75.0, ("f1", "macro-F1"): 71.43, ("score", "score"): 75.0}
    assert {(r.dataset_type, r.dataset_name) for r in card.data.eval_results} == {("csv", "reviews-val.csv")}
    row = "| validation | training run's evaluation | custom | accuracy 75.00, macro-F1 71.43 | 75.00 | 62.50 | 8 |"
    assert row in card.text  # the floor beside the score


def test_push_sends_the_model_and_its_card_only(trained, tiny_backbone, superglue_dir):
    out, _, _ = trained
    model = out / "model"
    (model / "eval-train.json").write_text(json.dumps({"model": str(out), "tasks": {}}))  # names local paths
    (model / ".README.md.tmp").write_text("half a file")
    before = fingerprint(out)
    with FakeHub() as hub, hub_at(hub.url):
        code, output = run("push", out, "team/cb-small", "--private", "--token", TOKEN)
        assert code == 0, output
        assert output == f"pushed to {hub.url}/team/cb-small"
        assert run("push", out, "team/cb-small", "--token", TOKEN)[0] == 0  # again: the repository exists
    assert len(hub.commits["team/cb-small"]) == 2
    assert hub.repos["team/cb-small"]["visibility"] == "private" or hub.repos["team/cb-small"].get("private") is True
    sent = hub.files["team/cb-small"]
    assert set(sent) == set(upload_files(model)) and "eval-train.json" not in sent and ".README.md.tmp" not in sent
    for name, content in sent.items():
        if not name.endswith(".safetensors"):
            for local in (out, tiny_backbone, superglue_dir):
                assert str(local) not in content.decode(), (name, local)
    card = sent["README.md"].decode()
    assert 'model="team/cb-small"' in card and "trust_remote_code" not in card and PLACEHOLDER not in card
    assert fingerprint(out) == before  # nothing local was written, the card included


@pytest.mark.parametrize(
    "hub_settings, token, expected",
    [
        ({"fail": 401}, TOKEN, "HTTP 401 from http://127.0.0.1:"),
        ({}, "hf_a_wrong_token", "HTTP 401 from"),  # the fake's own check of the token
        ({"fail": 403}, TOKEN, "HTTP 403 from"),
        ({"fail": 404}, TOKEN, "HTTP 404 from"),
        ({"fail": 500}, TOKEN, "HTTP 500 from"),
        ({"fail": 403, "fail_on": "/commit/"}, TOKEN, "HTTP 403 from"),  # the repository made, the commit refused
        ({"drop": True}, TOKEN, "cannot reach http://127.0.0.1:"),  # the connection closed without an answer
    ],
)
def test_a_failed_push_is_one_line_and_changes_nothing(trained, hub_settings, token, expected):
    out, _, _ = trained
    before = fingerprint(out)
    with FakeHub(**hub_settings) as hub, hub_at(hub.url):
        code, output = run("push", out, "me/cb", "--token", token)
    assert code == 2 and len(output.splitlines()) == 1, output
    assert output.startswith("error: me/cb: not pushed (the local model is unchanged): "), output
    assert expected in output, output
    if hub_settings.get("fail") == 401 or token != TOKEN:
        assert "hf auth login" in output and "HF_TOKEN" in output, output
    assert fingerprint(out) == before and hub.paths  # it did try, and the card still names no repository
    assert PLACEHOLDER in (out / "model" / "README.md").read_text()


def test_no_network_is_one_line_and_exit_2(trained):
    """The reported case, as a user runs it: HF_ENDPOINT at a closed port, HF_HUB_OFFLINE unset, the real
    `dhrd` entry point (its own exit codes) in a fresh process."""
    out, _, _ = trained
    before = fingerprint(out)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", PYTHONPATH=str(REPO / "src"), DHRD_TRACEBACK="0")
    done = subprocess.run(
        [sys.executable, "-m", "dhrd", "push", str(out), "me/cb", "--token", TOKEN],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, (done.returncode, lines)
    assert lines[0].startswith(
        "error: me/cb: not pushed (the local model is unchanged): cannot reach http://127.0.0.1:"
    )
    assert "ConnectError" in lines[0] and "traceback" not in lines[0]
    assert fingerprint(out) == before


def test_offline_mode_and_no_token_are_one_line_with_no_request(trained):
    out, _, _ = trained
    with FakeHub() as hub, hub_at(hub.url):
        code, output = run("push", out, "me/cb")  # no --token, no HF_TOKEN, no login
        assert code == 2 and output.startswith("error: me/cb: not pushed: no hub token (log in with"), output
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(constants, "HF_HUB_OFFLINE", True)
            code, output = run("push", out, "me/cb", "--token", TOKEN)
        assert code == 2 and len(output.splitlines()) == 1 and "HF_HUB_OFFLINE is set" in output, output
        code, output = run("push", out, "me/not a name", "--token", TOKEN)
        assert code == 2 and "not a hub repository id" in output, output
    assert hub.paths == []


def test_dry_run_lists_what_would_go_and_makes_no_request(trained):
    out, _, _ = trained
    model = out / "model"
    with FakeHub() as hub, hub_at(hub.url):
        code, output = run("push", out, "me/cb", "--dry-run")  # no token needed either
    assert code == 0, output
    assert hub.paths == []
    lines = output.splitlines()
    files = upload_files(model)
    assert lines[0].startswith(f"would push {len(files)} files (") and f"to {hub.url}/me/cb (created public" in lines[0]
    listed = {line.split()[0]: line for line in lines[1:]}
    assert set(listed) == set(files)
    weights = (model / "model.safetensors").stat().st_size
    assert f"{weights / 1000:.1f} kB" in listed["model.safetensors"]
    assert "made for this push" in listed["README.md"] and "made for this push" not in listed["config.json"]


def test_an_older_config_is_cleaned_in_the_pushed_copy_only(trained, tmp_path, superglue_dir):
    """A model saved before configs were portable (its data folder in config.json) goes without the path."""
    out, _, _ = trained
    old = tmp_path / "old" / "model"
    shutil.copytree(out / "model", old)
    config = json.loads((old / "config.json").read_text())
    config["dhrd"]["data"]["data_dir"] = str(superglue_dir)
    (old / "config.json").write_text(json.dumps(config))
    before = fingerprint(old)
    with FakeHub() as hub, hub_at(hub.url):
        assert run("push", old, "me/old", "--token", TOKEN)[0] == 0
    assert str(superglue_dir) not in hub.files["me/old"]["config.json"].decode()
    assert set(hub.files["me/old"]) == set(upload_files(old)) and fingerprint(old) == before


def test_push_refuses_what_is_not_a_saved_dhrd_model(tmp_path, tiny_backbone):
    with FakeHub() as hub, hub_at(hub.url):
        for path, fragment in [
            (tmp_path / "nowhere", "no trained model here"),
            (tiny_backbone, "not a dhrd model"),  # a plain transformers model: config.json without dhrd's settings
        ]:
            code, output = run("push", path, "me/x", "--token", TOKEN)
            assert code == 2 and len(output.splitlines()) == 1 and output.startswith("error:"), output
            assert fragment in output, output
    assert hub.paths == []


def test_a_finished_run_pushes_without_training_again(trained, tiny_backbone, superglue_dir):
    out, metrics, _ = trained
    settings = tiny_run(tiny_backbone, superglue_dir, learning_rate=1e-3, seed=3)
    args = DHRDTrainingArguments(**settings, output_dir=str(out), push_to_hub=True, hub_model_id="me/again")
    with FakeHub() as hub, hub_at(hub.url):
        with pytest.raises(DHRDInputError, match=r"no hub token.*; the trained model is saved: `dhrd push .*`"):
            train(args)  # no token: one line that says the model is there, and how to push it
        before = fingerprint(out)
        args.hub_token = TOKEN
        result = train(args)
    assert result.metrics == metrics and fingerprint(out) == before  # nothing trained or written
    assert set(hub.files["me/again"]) == set(upload_files(out / "model"))


def test_the_trainer_api_pushes_the_saved_model(trained, tiny_backbone, superglue_dir):
    """``DHRDTrainer.push_to_hub`` sends ``<output_dir>/model`` (what ``dhrd.train(trainer=...)`` saved), not
    Trainer's checkpoint folder."""
    out, _, _ = trained
    settings = tiny_run(tiny_backbone, superglue_dir, learning_rate=1e-3, seed=3)
    args = DHRDTrainingArguments(**settings, output_dir=str(out), hub_model_id="me/api", hub_token=TOKEN)
    with FakeHub() as hub, hub_at(hub.url):
        trainer = DHRDTrainer(args=args)
        assert trainer.args.push_to_hub is False  # Trainer's own copy: no repository made as it is built
        assert hub.paths == []
        assert trainer.push_to_hub() == f"{hub.url}/me/api"
    assert set(hub.files["me/api"]) == set(upload_files(out / "model"))
