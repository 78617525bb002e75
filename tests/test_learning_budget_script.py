"""scripts/learning_budget.py's verdict: the smallest budget at which pooled beats the majority floor."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "learning_budget.py"


@pytest.fixture(scope="module")
def budget():
    spec = importlib.util.spec_from_file_location("learning_budget", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(budget, monkeypatch, scores: dict):
    """Summarise cells whose per-epoch scores are given, as if their runs had finished."""

    def finished(cell):
        per_epoch = scores.get(cell)
        if per_epoch is None:
            return None
        epochs = [{"epoch": i + 1, "score": s} for i, s in enumerate(per_epoch)]
        task = {"score": per_epoch[-1], "examples": 100}
        return {"tasks": {cell.task: task}, "epochs": epochs, "train_rows": 800, "train_seconds": 300.0}

    monkeypatch.setattr(budget, "finished", finished)
    floor = {("copa", "yesno"): {"score": 55.0, "chance": 50.0}}
    return budget.summarise(list(scores), floor)["smallest_learning_budget"]["copa"]


def test_one_lucky_seed_is_not_learning(budget, monkeypatch):
    Cell = budget.Cell
    seeds = {Cell("copa", None, 3, 3e-5, False, seed=1): [54.0, 60.0, 59.0]}
    alone = run(budget, monkeypatch, seeds)
    assert alone["epoch"] == 2 and alone["score"] == 60.0 and alone["seeds"] == 1  # one seed: its own verdict
    seeds[Cell("copa", None, 3, 3e-5, False, seed=2)] = [54.0, 54.0, 56.0]
    assert run(budget, monkeypatch, seeds) is None  # the mean, 57.0 and 57.5, is under 55 + 5


def test_a_budget_learnt_on_average_names_it_without_its_seed(budget, monkeypatch):
    Cell = budget.Cell
    seeds = {
        Cell("copa", None, 3, seed=s): scores for s, scores in [(1, [58, 62, 64]), (2, [56, 60, 66]), (3, [60, 61, 62])]
    }
    found = run(budget, monkeypatch, seeds)
    assert found["cell"] == "copa-nall-e3-lora-lr0.0002" and found["seeds"] == 3
    assert found["epoch"] == 2 and found["score"] == pytest.approx(61.0)
    assert found["row_epochs"] == 1600 and found["seconds"] == 200
