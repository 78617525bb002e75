"""The int8 study's flip margins: which labels int8 changed, and how close to a tie fp32 had put them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "int8_agreement.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("int8_agreement", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_flip_margins_name_the_changed_labels_and_their_fp32_margin(study):
    reference = np.array([[0.51, 0.49], [0.9, 0.1], [0.2, 0.3], [0.45, 0.55]])[:, :2]
    reference = reference / reference.sum(1, keepdims=True)  # rows: margin 0.02, 0.8, 0.2, 0.1
    probs = np.array([[0.49, 0.51], [0.88, 0.12], [0.4, 0.6], [0.56, 0.44]])  # rows 1 and 4 flip
    result = study.flip_margins(reference, probs)
    assert result["flipped_rows"] == 2
    assert result["widest_flipped_margin"] == pytest.approx(0.1, abs=1e-4)  # row 4's, the wider of the two
    assert result["near_tie_rows"] == 1  # only row 1 is within 0.05 of a tie
    assert study.flips({**result, "widest_flipped_margin": 0.1}) == "2: 0.100"
    assert study.flips({"flipped_rows": 0, "widest_flipped_margin": 0.0}) == "0"
    assert study.flips({}) == ""  # rows measured before the margins were recorded


def test_no_flips_report_zero(study):
    reference = np.array([[0.7, 0.3], [0.2, 0.8]])
    assert study.flip_margins(reference, reference) == {
        "flipped_rows": 0,
        "widest_flipped_margin": 0.0,
        "near_tie_rows": 0,
    }
