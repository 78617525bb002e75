"""The variants study's names: each variant is the settings its name says (a misread name trains another cell)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "variants_study.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("variants_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, settings",
    [
        ("pooled", {"method": "pooled"}),
        ("pooled-linear", {"method": "pooled", "head": "linear"}),
        ("dhrd", {"method": "dhrd", "alpha": 1.0}),
        ("dhrd-linear", {"method": "dhrd", "alpha": 1.0, "head": "linear"}),
        ("dhrd-a0.25-reasoning", {"method": "dhrd", "alpha": 0.25, "lm_scope": "reasoning"}),
        ("dhrd-example", {"method": "dhrd", "alpha": 1.0, "lm_normalization": "example"}),
        ("auto", {"method": "dhrd", "alpha_search": True}),
    ],
)
def test_a_variant_name_is_its_settings(study, name, settings):
    assert study.variant_settings(name) == settings


@pytest.mark.parametrize("name", ["pooled-a0.5", "pooled-reasoning", "dhrd-mlp", "linear"])
def test_an_unknown_variant_is_refused(study, name):
    with pytest.raises(SystemExit, match="unknown variant"):
        study.variant_settings(name)
