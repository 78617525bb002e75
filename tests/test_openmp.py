"""The CLI makes torch's OpenMP threads wait passively unless the user chose a policy (dhrd.openmp)."""

import os
import subprocess
import sys

import pytest

CLI_THEN_POLICY = (
    "import os, sys\n"
    "sys.argv = ['dhrd', '--version']\n"
    "from dhrd import cli\n"
    "try:\n"
    "    cli.main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('policy', os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
)


def _policy_after_cli(**env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "DHRD_KEEP_OPENMP")}
    done = subprocess.run(
        [sys.executable, "-c", CLI_THEN_POLICY], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "policy PASSIVE False"),  # set before torch is loaded, so OpenMP reads it
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "policy ACTIVE False"),  # the user's own policy is kept
        ({"DHRD_KEEP_OPENMP": "1"}, "policy None False"),
    ],
)
def test_the_cli_sets_a_passive_wait_unless_told_otherwise(env, expected):
    assert _policy_after_cli(**env) == expected


def test_no_policy_is_set_once_torch_is_loaded(monkeypatch):
    """OpenMP read its settings when torch loaded: setting one later would claim an effect it cannot have."""
    import torch  # noqa: F401

    from dhrd.openmp import passive_openmp_wait

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("DHRD_KEEP_OPENMP", raising=False)
    assert passive_openmp_wait() is False
    assert "OMP_WAIT_POLICY" not in os.environ
