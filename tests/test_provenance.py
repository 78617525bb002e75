"""The one provenance record: the git commit read from a checkout's files, the command line with its secrets
blanked, and the same keys wherever it is written (each writer's own test asserts them with
``conftest.assert_provenance``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import assert_provenance

from dhrd import provenance as prov
from dhrd.provenance import command_line, git_commit, invoked_as_dhrd, provenance

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
FAKE_TOKEN = "hf_FAKEtoken1234567890abcdefXYZ"
FAKE_KEY = "sk-FAKEkey1234567890abcdefXYZ"


def _package(root):
    """``<root>/src/dhrd``: where dhrd's modules lie in a source checkout."""
    package = root / "src" / "dhrd"
    package.mkdir(parents=True)
    return package


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_git_commit_of_a_branch_a_detached_head_and_packed_refs(tmp_path):
    package = _package(tmp_path)
    _write(tmp_path / ".git" / "HEAD", "ref: refs/heads/main\n")
    _write(tmp_path / ".git" / "refs" / "heads" / "main", COMMIT + "\n")
    assert git_commit(package) == COMMIT
    (tmp_path / ".git" / "refs" / "heads" / "main").unlink()  # after `git gc`: the branch is in packed-refs
    _write(
        tmp_path / ".git" / "packed-refs",
        f"# pack-refs with: peeled\n{OTHER} refs/heads/other\n{COMMIT} refs/heads/main\n",
    )
    assert git_commit(package) == COMMIT
    _write(tmp_path / ".git" / "HEAD", OTHER + "\n")  # detached
    assert git_commit(package) == OTHER


def test_git_commit_of_a_worktree(tmp_path):
    """A worktree's ``.git`` is a file naming its folder in the main ``.git``; its branch lives there."""
    main, tree = tmp_path / "main", tmp_path / "tree"
    package = _package(tree)
    _write(main / ".git" / "worktrees" / "tree" / "HEAD", "ref: refs/heads/feature\n")
    _write(main / ".git" / "worktrees" / "tree" / "commondir", "../..\n")
    _write(main / ".git" / "refs" / "heads" / "feature", COMMIT + "\n")
    _write(tree / ".git", f"gitdir: {main / '.git' / 'worktrees' / 'tree'}\n")
    assert git_commit(package) == COMMIT


def test_no_git_commit_outside_a_source_checkout(tmp_path):
    # a wheel in a virtual environment kept inside a checkout: that checkout is not dhrd's source
    _write(tmp_path / ".git" / "HEAD", COMMIT + "\n")
    wheel = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages" / "dhrd"
    wheel.mkdir(parents=True)
    assert git_commit(wheel) is None
    assert git_commit(_package(tmp_path / "unpacked")) is None  # a source tree without .git
    odd = tmp_path / "odd"
    _write(odd / ".git" / "HEAD", "ref: refs/heads/gone\n")  # a branch with no commit yet
    assert git_commit(_package(odd)) is None


def test_this_checkout_reads_its_own_commit():
    """The tests run from a checkout (src/dhrd): the record names a 40-hex commit; without git, never an error."""
    found = git_commit()
    assert found is None or prov.SHA.fullmatch(found)


def test_command_line_blanks_secret_options_and_environment_values(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    argv = ["train", "--hub-token", FAKE_TOKEN, f"--hub_token={FAKE_TOKEN}", "--note", FAKE_KEY, "--lr", "1e-4"]
    line = command_line(argv)
    assert FAKE_TOKEN not in line and FAKE_KEY not in line
    assert line == "dhrd train --hub-token '<secret>' '--hub_token=<secret>' --note '<secret>' --lr 1e-4"


def test_command_line_drops_and_portable_paths():
    argv = ["reproduce", "--tables-only", "--output-dir", "/home/u/runs/x", "--config=/etc/cpu.toml", "rel/dir"]
    assert command_line(argv, drop=("--tables-only",)) == (
        "dhrd reproduce --output-dir /home/u/runs/x --config=/etc/cpu.toml rel/dir"
    )
    portable = command_line(argv, portable=True, program=("python", "x.py"))
    assert portable == "python x.py reproduce --tables-only --output-dir x --config=cpu.toml rel/dir"


def test_the_record_has_its_keys_and_no_secret(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN + "env")
    monkeypatch.setattr(sys, "argv", ["/usr/bin/dhrd", "train", "--hub-token", FAKE_TOKEN, "--x", FAKE_TOKEN + "env"])
    record = provenance()
    assert_provenance(record)
    text = json.dumps(record)
    assert FAKE_TOKEN not in text and record["command"].startswith("dhrd train --hub-token '<secret>'")
    monkeypatch.setattr(sys, "argv", ["dhrd", "export", "--model", "/home/u/runs/m", f"--output={Path.home()}/e"])
    assert provenance(portable=True)["command"] == "dhrd export --model m --output=e"  # an export travels
    monkeypatch.setattr(sys, "argv", ["/x/bin/pytest", "-k", "y"])  # the Python API: no dhrd command to record
    assert provenance()["command"] is None


@pytest.mark.parametrize(
    "program, expected",
    [("/venv/bin/dhrd", True), ("/src/dhrd/__main__.py", True), ("/x/pytest", False), ("-c", False)],
)
def test_invoked_as_dhrd(program, expected):
    assert invoked_as_dhrd(program) is expected


def test_versions_come_from_the_installed_packages():
    import torch

    versions = prov.package_versions()
    assert list(versions)[:2] == ["dhrd", "python"] and versions["torch"] == torch.__version__
