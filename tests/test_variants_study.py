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
        # every variant names its head: "pooled" means the paper's MLP before and after linear became the default
        ("pooled", {"method": "pooled", "head": "mlp"}),
        ("pooled-linear", {"method": "pooled", "head": "linear"}),
        ("dhrd", {"method": "dhrd", "alpha": 1.0, "head": "mlp"}),
        ("dhrd-linear", {"method": "dhrd", "alpha": 1.0, "head": "linear"}),
        ("dhrd-a0.25-reasoning", {"method": "dhrd", "alpha": 0.25, "lm_scope": "reasoning", "head": "mlp"}),
        ("dhrd-example", {"method": "dhrd", "alpha": 1.0, "lm_normalization": "example", "head": "mlp"}),
        ("auto", {"method": "dhrd", "alpha_search": True, "head": "mlp"}),
        ("auto-linear", {"method": "dhrd", "alpha_search": True, "head": "linear"}),
    ],
)
def test_a_variant_name_is_its_settings(study, name, settings):
    assert study.variant_settings(name) == settings


@pytest.mark.parametrize("name", ["pooled-a0.5", "pooled-reasoning", "dhrd-mlp", "linear", "auto-a0.5"])
def test_an_unknown_variant_is_refused(study, name):
    with pytest.raises(study.Refused, match="unknown variant"):
        study.variant_settings(name)


class _TinyStudy:
    """Two own-data rows: enough for the tables' scores and paired differences."""

    task = "custom"
    input_format = "native"
    label_names = ("no", "yes")

    def __init__(self):
        from dhrd.data.examples import Example

        self.examples = [Example(id=f"r{i}", task="custom", text="t", label=i % 2, group=f"r{i}") for i in range(4)]

    def scored_split(self) -> str:
        return "test (4 rows)"


def _finish(
    study, runs: Path, name: str, probs: list[list[float]], peak: dict | None = None, metrics: dict | None = None
) -> None:
    import json

    run = runs / name
    run.mkdir(parents=True)
    scored = {"ids": ["r0", "r1", "r2", "r3"], "probs": probs, **(peak or {"peak_rss_gb": 1.0})}
    (run / "scored.json").write_text(json.dumps(scored))
    (run / "metrics.json").write_text(json.dumps(metrics or {"train_seconds": 10.0}))


def _cells(study, *variants: str, seed: int = 1) -> list:
    """The cells a study command names: 4 rows, one epoch at lr 1e-3, the given variants and seed."""
    return [study.Cell(4, variant, seed, 1.0, 0.001) for variant in variants]


def test_finished_cells_are_kept_beside_the_tables_and_outlive_the_runs(study, tmp_path):
    """A new checkout has no runs/: the tables and their paired intervals come back from the kept cells."""
    fake = _TinyStudy()
    runs, out = tmp_path / "runs", tmp_path / "results" / "variants"
    out.parent.mkdir()
    right, wrong = [[0.9, 0.1], [0.2, 0.8]] * 2, [[0.1, 0.9], [0.2, 0.8]] * 2
    _finish(study, runs, "n4-e1-lr0.001-pooled-s1", wrong)
    _finish(study, runs, "n4-e1-lr0.001-dhrd-s1", right)
    study.keep_finished(runs, out, kept := {}, _cells(study, "pooled", "dhrd"))
    assert set(kept) == {"n4-e1-lr0.001-pooled-s1", "n4-e1-lr0.001-dhrd-s1"}

    import shutil

    shutil.rmtree(runs)  # the runs are gone; the kept cells are not
    again = study.load_kept(out)
    cells = [study.parse_cell(name) for name in again]
    summary = study.summarise(fake, cells, again)
    rows = {r["variant"]: r for r in summary["rows"]}
    assert rows["pooled"]["scores"] == [50.0] and rows["dhrd"]["scores"] == [100.0]
    assert rows["dhrd"]["paired"]["difference"] == 50.0
    assert rows["dhrd"]["train_seconds"] == [10.0]


def test_a_cell_resumed_from_a_checkpoint_without_a_clock_has_no_time_and_the_ratio_leaves_its_seed_out(
    study, tmp_path
):
    """Such a run timed its last process only (RTE on all rows, pooled-linear seed 2: 1,848 s of a ~2,200 s run):
    counted, its pooled would read faster than it was and every DHRD ratio paired with it higher."""
    fake = _TinyStudy()
    runs, out = tmp_path / "runs", tmp_path / "variants"
    probs = [[0.9, 0.1], [0.2, 0.8]] * 2
    resumed = {"optimizer_seconds_per_epoch": 6.0, "resumed_from": "checkpoint-50", "train_seconds_before_resume": None}
    _finish(study, runs, "n4-e1-lr0.001-pooled-linear-s1", probs, metrics={"optimizer_seconds_per_epoch": 10.0})
    _finish(study, runs, "n4-e1-lr0.001-pooled-linear-s2", probs, metrics=resumed)
    kept_clock = {**resumed, "optimizer_seconds_per_epoch": 30.0, "train_seconds_before_resume": 12.0}
    _finish(study, runs, "n4-e1-lr0.001-dhrd-linear-s1", probs, metrics={"optimizer_seconds_per_epoch": 20.0})
    _finish(study, runs, "n4-e1-lr0.001-dhrd-linear-s2", probs, metrics=kept_clock)  # resumed, its time known
    cells = _cells(study, "pooled-linear", "dhrd-linear") + _cells(study, "pooled-linear", "dhrd-linear", seed=2)
    study.keep_finished(runs, out, kept := {}, cells)
    assert kept["n4-e1-lr0.001-pooled-linear-s2"]["train_seconds"] is None
    assert kept["n4-e1-lr0.001-dhrd-linear-s2"]["train_seconds"] == 30.0
    row = {r["variant"]: r for r in study.summarise(fake, cells, kept)["rows"]}["dhrd-linear"]
    assert row["paired"]["seeds"] == 2  # the scores pair on both seeds; the time on seed 1 only
    assert (row["time_vs_pooled"], row["time_seeds"], row["untimed_seeds"]) == (2.0, [1], [2])
    assert study.time_text(row) == "2.00x (seed 1 only: seed 2's time is unknown)"
    assert study.time_text({**row, "untimed_seeds": [2, 3]}) == "2.00x (seed 1 only: seeds 2,3' times are unknown)"
    kept_before = {k: v for k, v in row.items() if k != "untimed_seeds"}  # a row kept before rows named them
    assert study.time_text(kept_before) == "2.00x (seed 1 only: the other seeds' times are unknown)"

    kept["n4-e1-lr0.001-pooled-linear-s2"]["train_seconds"] = 6.0  # kept before the rule: read again from its run
    study.keep_finished(runs, out, kept, cells)
    assert study.load_kept(out)["n4-e1-lr0.001-pooled-linear-s2"]["train_seconds"] is None


def test_a_study_stopped_before_its_first_cell_finished_starts_again(study, tmp_path):
    """Its first start wrote the tables and an empty cells file: the second resumes it (it was refused as a study
    written before cells were kept); tables with no cells file beside them are still protected."""
    out = tmp_path / "variants"
    study.keep_finished(tmp_path / "runs", out, {}, _cells(study, "pooled"))
    out.with_suffix(".json").write_text("{}")
    assert study.load_kept(out) == {} and not study.tables_without_cells(out)
    study.cells_path(out).unlink()
    assert study.tables_without_cells(out)


def test_each_variant_is_paired_with_pooled_of_its_own_head(study, tmp_path):
    """DHRD against what `--method pooled` gives with the same head; a study without it pairs with the other."""
    fake = _TinyStudy()
    runs, out = tmp_path / "runs", tmp_path / "variants"
    right, wrong, half = [[0.9, 0.1], [0.2, 0.8]] * 2, [[0.1, 0.9], [0.2, 0.8]] * 2, [[0.9, 0.1], [0.8, 0.2]] * 2
    _finish(study, runs, "n4-e1-lr0.001-pooled-s1", wrong)
    _finish(study, runs, "n4-e1-lr0.001-pooled-linear-s1", half)
    _finish(study, runs, "n4-e1-lr0.001-auto-linear-s1", right)
    _finish(study, runs, "n4-e1-lr0.001-dhrd-s1", right)
    study.keep_finished(runs, out, kept := {}, _cells(study, "pooled", "pooled-linear", "auto-linear", "dhrd"))
    rows = {r["variant"]: r for r in study.summarise(fake, [study.parse_cell(n) for n in kept], kept)["rows"]}
    assert (rows["auto-linear"]["baseline"], rows["auto-linear"]["paired"]["difference"]) == ("pooled-linear", 50.0)
    assert (rows["dhrd"]["baseline"], rows["dhrd"]["paired"]["difference"]) == ("pooled", 50.0)
    assert "paired" not in rows["pooled-linear"] and rows["pooled-linear"]["vs_mlp"]["difference"] == 0.0


def test_a_difference_over_fewer_seeds_than_its_row_names_them(study, tmp_path):
    """pooled-linear has seeds 1-3 but the MLP's pooled only seed 1 so far (a queue part way): the head comparison
    is over seed 1 and says so, instead of standing beside the row's three seeds."""
    fake = _TinyStudy()
    runs, out = tmp_path / "runs", tmp_path / "variants"
    right, wrong = [[0.9, 0.1], [0.2, 0.8]] * 2, [[0.1, 0.9], [0.2, 0.8]] * 2
    _finish(study, runs, "n4-e1-lr0.001-pooled-s1", right)
    for seed in (1, 2, 3):
        _finish(study, runs, f"n4-e1-lr0.001-pooled-linear-s{seed}", wrong)
    cells = _cells(study, "pooled") + [c for seed in (1, 2, 3) for c in _cells(study, "pooled-linear", seed=seed)]
    study.keep_finished(runs, out, kept := {}, cells)
    summary = study.summarise(fake, [study.parse_cell(n) for n in kept], kept)
    row = next(r for r in summary["rows"] if r["variant"] == "pooled-linear")
    assert row["seeds"] == [1, 2, 3] and row["vs_mlp"]["paired_seeds"] == [1]
    assert row["vs_mlp"]["difference"] == -50.0
    table = study.markdown(summary, "t", "c")
    head_table = table[table.index("## The linear head") :]
    assert "| pooled-linear | 1,2,3 | -50.0 [" in head_table and "), seed 1 only |  |" in head_table


def test_bad_input_to_a_study_is_one_line_and_exit_code_2(tmp_path):
    """The scripts share dhrd's rule: a refused study is one line on stderr, exit code 2, no traceback."""
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--task",
            "cb",
            "--variants",
            "pooled,nonsense",
            "--runs",
            str(tmp_path),
            "--out",
            str(tmp_path / "t"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("variants_study: ") and "unknown variant" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_study_of_linear_heads_only_pairs_with_pooled_linear(study, tmp_path):
    """The bigger-student study trains the default (linear) head only: its DHRD is paired with pooled-linear."""
    fake = _TinyStudy()
    runs, out = tmp_path / "runs", tmp_path / "variants"
    right, wrong = [[0.9, 0.1], [0.2, 0.8]] * 2, [[0.1, 0.9], [0.2, 0.8]] * 2
    _finish(study, runs, "n4-e1-lr0.001-pooled-linear-s1", right)
    _finish(study, runs, "n4-e1-lr0.001-dhrd-linear-s1", wrong)
    study.keep_finished(runs, out, kept := {}, _cells(study, "pooled-linear", "dhrd-linear"))
    summary = study.summarise(fake, [study.parse_cell(name) for name in kept], kept)
    rows = {r["variant"]: r for r in summary["rows"]}
    assert rows["dhrd-linear"]["baseline"] == "pooled-linear"
    assert rows["dhrd-linear"]["paired"]["difference"] == -50.0
    assert "paired" not in rows["pooled-linear"]
    table = study.markdown({**summary, "backbone": "qwen.gguf"}, "t", "c")
    assert "qwen.gguf, LoRA" in table and ") vs pooled-linear |" in table


def test_the_backbone_option_names_the_student_whatever_the_config_says(study, tmp_path):
    class _Config(_TinyStudy):
        def settings(self):
            return {"task": "cb", "backbone": "from/config", "gguf_file": "x.gguf"}

    cell = study.Cell(4, "dhrd-linear", 1, 1.0, 1e-3)
    args = study.training_arguments(_Config(), cell, tmp_path, None, False, "students/qwen.gguf")
    assert (args.backbone, args.gguf_file, args.head) == ("students/qwen.gguf", None, "linear")
    assert study.training_arguments(_Config(), cell, tmp_path, None, False).backbone == "from/config"


def test_an_auto_cell_keeps_its_search_beside_the_tables(study, tmp_path):
    """An auto cell's search (longer than a session) keeps its trials in an optuna journal beside the tables, which
    a new checkout (no runs/) has: ``<out>.searches/<cell>.log``. A cell that searches nothing names none."""

    class _Task(_TinyStudy):
        def settings(self):
            return {"task": "rte"}

    out = tmp_path / "results" / "auto-rte"
    searches = study.searches_path(out)
    assert searches == tmp_path / "results" / "auto-rte.searches"
    runs = tmp_path / "runs"
    auto, fixed = (study.Cell(None, variant, 1, 1.0, 2e-4) for variant in ("auto-linear", "dhrd-linear"))
    args = study.training_arguments(_Task(), auto, runs, None, False, None, searches)
    assert args.alpha_search and args.alpha_search_storage == str(searches / f"{auto.name}.log")
    assert args.output_dir == str(runs / auto.name)  # the run itself stays under runs/
    assert study.training_arguments(_Task(), fixed, runs, None, False, None, searches).alpha_search_storage is None


def test_a_cells_peak_memory_is_its_own_not_the_study_processs(study, tmp_path):
    """A queue runs many cells in one process: each cell's peak starts when the cell does, so a bigger cell before
    it (here a freed 512 MB array) does not count."""
    import json

    import numpy as np

    from dhrd.memory import peak_rss_gb, reset_peak

    fake = _TinyStudy()
    fake.scored_probs = lambda run: [[0.9, 0.1]] * 4
    earlier = np.ones(2**26)  # 512 MB, touched
    del earlier
    before = peak_rss_gb()
    if not reset_peak():
        pytest.skip("this kernel cannot reset a process's peak resident memory (/proc/self/clear_refs)")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"memory": {"peak_rss": 0.1}}))  # its training's
    study.score_cell(fake, tmp_path / "run")
    scored = json.loads((tmp_path / "run" / "scored.json").read_text())
    assert scored["peak_rss_scope"] == "cell" and scored["peak_rss_gb"] <= before - 0.4


def test_a_resumed_cells_peak_counts_its_training_before_the_kill(study, tmp_path):
    """A cell killed in its training and resumed by another process: its training's peak (metrics.json, which
    counts the processes before the resume) is the cell's when it is above what this process reached."""
    import json

    fake = _TinyStudy()
    fake.scored_probs = lambda run: [[0.9, 0.1]] * 4
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"memory": {"peak_rss": 99.0}}))
    study.score_cell(fake, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "scored.json").read_text())["peak_rss_gb"] == 99.0


def test_the_table_gives_each_variants_peak_memory_and_marks_an_upper_bound(study, tmp_path):
    """The largest cell peak of a variant; a cell from before peaks were per cell kept its process's peak so far,
    an upper bound, marked ≤ where it is the largest."""
    fake = _TinyStudy()
    runs, out = tmp_path / "runs", tmp_path / "variants"
    right = [[0.9, 0.1], [0.2, 0.8]] * 2
    own = {"peak_rss_scope": "cell"}
    _finish(study, runs, "n4-e1-lr0.001-pooled-linear-s1", right, {"peak_rss_gb": 2.5, **own})
    _finish(study, runs, "n4-e1-lr0.001-pooled-linear-s2", right, {"peak_rss_gb": 1.5})  # a process's peak
    _finish(study, runs, "n4-e1-lr0.001-dhrd-linear-s1", right, {"peak_rss_gb": 3.0, **own})
    _finish(study, runs, "n4-e1-lr0.001-dhrd-linear-s2", right, {"peak_rss_gb": 4.3})
    named = [c for seed in (1, 2) for c in _cells(study, "pooled-linear", "dhrd-linear", seed=seed)]
    study.keep_finished(runs, out, kept := {}, named)
    table = study.markdown(study.summarise(fake, [study.parse_cell(n) for n in kept], kept), "t", "c")
    lines = [line.rstrip(" |").split(" | ") for line in table.splitlines() if line.startswith("| n4")]
    assert {cells[1]: cells[-1] for cells in lines} == {"pooled-linear": "2.5", "dhrd-linear": "≤4.3"}


def test_a_cell_resumed_from_a_checkpoint_without_a_peak_is_a_lower_bound_marked(study, tmp_path):
    """Such a run's peak is its last process's only (RTE on all rows, pooled-linear seed 2: 3.9 GB): the row's
    largest could be higher, so it is marked ≥, whether that cell or another is the largest; a resumed run whose
    checkpoint kept its peak is exact."""
    fake = _TinyStudy()
    runs, out = tmp_path / "runs", tmp_path / "variants"
    right, own = [[0.9, 0.1], [0.2, 0.8]] * 2, {"peak_rss_scope": "cell"}
    lost = {"train_seconds": 5.0, "resumed_from": "checkpoint-50", "memory": {"peak_rss_before_resume": None}}
    known = {**lost, "memory": {"peak_rss_before_resume": 2.0}}
    _finish(study, runs, "n4-e1-lr0.001-pooled-linear-s1", right, {"peak_rss_gb": 2.5, **own})
    _finish(study, runs, "n4-e1-lr0.001-pooled-linear-s2", right, {"peak_rss_gb": 1.5, **own}, metrics=lost)
    _finish(study, runs, "n4-e1-lr0.001-dhrd-linear-s1", right, {"peak_rss_gb": 3.0, **own}, metrics=known)
    _finish(study, runs, "n4-e1-lr0.001-dhrd-linear-s2", right, {"peak_rss_gb": 4.3, **own})
    named = [c for seed in (1, 2) for c in _cells(study, "pooled-linear", "dhrd-linear", seed=seed)]
    study.keep_finished(runs, out, kept := {}, named)
    assert kept["n4-e1-lr0.001-pooled-linear-s2"]["peak_rss_scope"] == study.LAST_PROCESS
    assert kept["n4-e1-lr0.001-dhrd-linear-s1"]["peak_rss_scope"] == "cell"
    table = study.markdown(study.summarise(fake, [study.parse_cell(n) for n in kept], kept), "t", "c")
    lines = [line.rstrip(" |").split(" | ") for line in table.splitlines() if line.startswith("| n4")]
    assert {cells[1]: cells[-1] for cells in lines} == {"pooled-linear": "≥2.5", "dhrd-linear": "4.3"}


def test_an_auto_study_pairs_with_another_studys_pooled_cells_after_the_runs_are_gone(study, tmp_path):
    """Queue C's auto study trains only auto; its pooled-linear cells are the fixed-settings study's. Once a new
    checkout has no runs/, `--pair-with` reads them from that study's kept cells: pooled only, the same student
    and scored rows, or one line that says why not."""
    import json

    fake = _TinyStudy()
    right, wrong = [[0.9, 0.1], [0.2, 0.8]] * 2, [[0.1, 0.9], [0.2, 0.8]] * 2
    fixed_runs, fixed = tmp_path / "runs-fixed", tmp_path / "fixed"
    _finish(study, fixed_runs, "n4-e1-lr0.001-pooled-linear-s1", wrong)
    _finish(study, fixed_runs, "n4-e1-lr0.001-dhrd-linear-s1", right)
    study.keep_finished(fixed_runs, fixed, {}, _cells(study, "pooled-linear", "dhrd-linear"))
    fixed.with_suffix(".json").write_text(json.dumps({"backbone": study.DEFAULT_STUDENT}))
    auto_runs, auto = tmp_path / "runs-auto", tmp_path / "auto"
    _finish(study, auto_runs, "n4-e1-lr0.001-auto-linear-s1", right)
    study.keep_finished(auto_runs, auto, kept := {}, _cells(study, "auto-linear"))

    study.pair_with_pooled_of([fixed], fake, study.DEFAULT_STUDENT, kept)
    assert set(kept) == {"n4-e1-lr0.001-auto-linear-s1", "n4-e1-lr0.001-pooled-linear-s1"}  # not its DHRD cells
    rows = {r["variant"]: r for r in study.summarise(fake, [study.parse_cell(n) for n in kept], kept)["rows"]}
    assert (rows["auto-linear"]["baseline"], rows["auto-linear"]["paired"]["difference"]) == ("pooled-linear", 50.0)

    with pytest.raises(study.Refused, match="its student is SmolLM2.*this study's qwen.gguf"):
        study.pair_with_pooled_of([fixed], fake, "qwen.gguf", {})
    fake.examples = fake.examples[:3]
    with pytest.raises(study.Refused, match="pooled-linear-s1 scored other rows"):
        study.pair_with_pooled_of([fixed], fake, study.DEFAULT_STUDENT, {})
    with pytest.raises(study.Refused, match="no study there"):
        study.pair_with_pooled_of([tmp_path / "nowhere"], fake, study.DEFAULT_STUDENT, {})


def test_studies_sharing_a_runs_folder_each_table_only_their_own_cells(study, tmp_path):
    """Queues B and C trained ComVE's fixed settings and its auto in one runs folder, and each table listed the
    other's cells (the fixed table an auto row of one seed; the auto table DHRD rows of seeds 2 and 3 only). A
    study keeps the cells its command names and the pooled cells of their budgets and seeds, which it pairs with;
    another budget's cells (the Qwen study at another learning rate) are not its either."""
    right, wrong = [[0.9, 0.1], [0.2, 0.8]] * 2, [[0.1, 0.9], [0.2, 0.8]] * 2
    runs = tmp_path / "runs"
    for name, probs in [
        ("n4-e1-lr0.001-pooled-s1", wrong),
        ("n4-e1-lr0.001-pooled-linear-s1", wrong),
        ("n4-e1-lr0.001-dhrd-linear-s1", right),
        ("n4-e1-lr0.001-auto-linear-s1", right),
        ("n4-e1-lr0.001-pooled-linear-s2", wrong),  # a seed neither command names
        ("n4-e1-lr0.0003-dhrd-linear-s1", right),  # another budget
        ("n4-e1-lr0.0003-pooled-linear-s1", right),
    ]:
        _finish(study, runs, name, probs)

    study.keep_finished(runs, tmp_path / "fixed", fixed := {}, _cells(study, "pooled-linear", "dhrd-linear"))
    assert set(fixed) == {"n4-e1-lr0.001-pooled-s1", "n4-e1-lr0.001-pooled-linear-s1", "n4-e1-lr0.001-dhrd-linear-s1"}
    study.keep_finished(runs, tmp_path / "auto", auto := {}, _cells(study, "auto-linear"))
    assert set(auto) == {"n4-e1-lr0.001-pooled-s1", "n4-e1-lr0.001-pooled-linear-s1", "n4-e1-lr0.001-auto-linear-s1"}
    rows = {r["variant"]: r for r in study.summarise(_TinyStudy(), [study.parse_cell(n) for n in auto], auto)["rows"]}
    assert (rows["auto-linear"]["baseline"], rows["auto-linear"]["paired"]["difference"]) == ("pooled-linear", 50.0)

    # a cell kept by an earlier command that wrote the same tables stays (their rows are that command's)
    study.keep_finished(runs, tmp_path / "auto", auto, _cells(study, "pooled-linear", seed=2))
    assert "n4-e1-lr0.001-auto-linear-s1" in auto and "n4-e1-lr0.001-pooled-linear-s2" in auto
    assert study.load_kept(tmp_path / "auto") == auto


def test_a_refused_study_is_one_line_and_exit_code_2(tmp_path):
    import subprocess

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--task", "cb", "--variants", "pooled,dhrd-mlp", "--runs", str(tmp_path / "r"),
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "unknown variant 'dhrd-mlp'" in done.stderr


@pytest.mark.parametrize("script", ["variants_study.py", "learning_budget.py"])
def test_study_scripts_start_torch_with_the_passive_openmp_wait(script):
    """A study beside other jobs (the queues) with two threads took 134 s a step with OpenMP's spinning wait, 2.1 s
    with the passive one: the scripts set it as the dhrd command does (dhrd.openmp), before their imports load torch,
    and keep a policy the user set or DHRD_KEEP_OPENMP=1."""
    import os
    import subprocess

    # what OMP_WAIT_POLICY is at the moment torch is first imported (OpenMP reads it when torch's runtime starts)
    probe = f"""
import os, runpy, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
sys.meta_path.insert(0, Watch())
sys.argv, sys.path[0:0] = ["study", "--help"], [{str(SCRIPT.parent)!r}]
try:
    runpy.run_path({str(SCRIPT.parent / script)!r}, run_name="study")
except SystemExit:
    pass
print(seen)
"""
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    found = subprocess.run([sys.executable, "-c", probe], env=clean, capture_output=True, text=True, timeout=300)
    assert found.stdout.strip().splitlines()[-1] == "['PASSIVE']", found.stderr
    own = subprocess.run(
        [sys.executable, "-c", probe], env={**clean, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True
    )
    assert own.stdout.strip().splitlines()[-1] == "['ACTIVE']", own.stderr
    kept = subprocess.run(  # the dhrd command's opt-out holds for the scripts too
        [sys.executable, "-c", probe], env={**clean, "DHRD_KEEP_OPENMP": "1"}, capture_output=True, text=True
    )
    assert kept.stdout.strip().splitlines()[-1] == "[None]", kept.stderr


def test_seeds_read_in_order_whatever_order_a_queue_took_them(study, tmp_path):
    """A second queue works a study from its far end (--seeds 3,2,1): the tables still list seeds 1, 2, 3."""
    fake = _TinyStudy()
    runs, out = tmp_path / "runs", tmp_path / "variants"
    right = [[0.9, 0.1], [0.2, 0.8]] * 2
    named = [c for seed in (3, 2, 1) for c in _cells(study, "pooled-linear", "dhrd-linear", seed=seed)]
    for cell in named:
        _finish(study, runs, cell.name, right)
    study.keep_finished(runs, out, kept := {}, named)
    rows = study.summarise(fake, study.table_cells(named, kept), kept)["rows"]
    assert [(r["variant"], r["seeds"]) for r in rows] == [("pooled-linear", [1, 2, 3]), ("dhrd-linear", [1, 2, 3])]


def test_a_study_leaves_a_cell_that_another_process_trains(study, tmp_path, lock_holder):
    """Two queues with the same cells: the one without the run directory's lock neither trains nor scores it."""
    trained = []
    assert study.finish_cell(_TinyStudy(), tmp_path / "run", lambda: trained.append(1)) is False
    assert trained == [] and not (tmp_path / "run" / "scored.json").exists()


def test_a_study_trains_and_scores_a_free_cell_once(study, tmp_path):
    fake = _TinyStudy()
    fake.scored_probs = lambda run: [[0.9, 0.1]] * 4
    trained = []

    def train_run():
        trained.append(1)
        (tmp_path / "run" / "metrics.json").write_text("{}")

    assert study.finish_cell(fake, tmp_path / "run", train_run) is True
    assert study.finish_cell(fake, tmp_path / "run", train_run) is True  # finished: scored again from its file
    assert trained == [1] and (tmp_path / "run" / "scored.json").is_file()


def test_the_tables_name_every_command_that_is_still_the_last_to_name_one_of_their_cells(study, tmp_path):
    """A study's tables gather cells from several commands (the MLP pair, then the linear pair): the one command
    they showed reproduced the last one's rows only. Each command still the last to name a shown cell is listed."""
    out = tmp_path / "variants"

    def command(variants: str, seeds: str = "1") -> tuple[str, list]:
        words = ["--task", "rte", "--sizes", "4", "--seeds", seeds, "--runs", "r", "--out", str(out)]
        options = study.build_parser().parse_args([*words, "--variants", variants])
        return f"python scripts/variants_study.py --variants {variants} --seeds {seeds}", study.named_cells(options)

    first, only_seed_1 = command("pooled,dhrd")
    study.record_command(out, first, only_seed_1)
    mlp, mlp_cells = command("pooled,dhrd", "1,2")  # names every cell the first did: it replaces it
    study.record_command(out, mlp, mlp_cells)
    linear, linear_cells = command("pooled-linear,dhrd-linear", "1,2")
    study.record_command(out, linear, linear_cells)
    shown = mlp_cells + linear_cells
    assert study.table_commands(out, shown) == [mlp, linear]
    assert study.table_commands(out, linear_cells) == [linear]  # a table without the MLP rows needs none of theirs

    study.record_command(out, mlp, mlp_cells)  # run again (a queue restarted): now the last
    assert study.table_commands(out, shown) == [linear, mlp]
    assert [c.name for c in mlp_cells] == [
        "n4-e1-lr0.001-pooled-s1",
        "n4-e1-lr0.001-dhrd-s1",
        "n4-e1-lr0.001-pooled-s2",
        "n4-e1-lr0.001-dhrd-s2",
    ]  # seed-major, as the study trains them

    summary = study.summarise(_TinyStudy(), [], {})
    several = study.markdown(summary, "t", [linear, mlp])
    assert f"- `{linear}`\n- `{mlp}`" in several and "Command: " not in several
    assert f"Command: `{linear}`" in study.markdown(summary, "t", [linear])


def test_a_rendering_is_not_recorded_as_a_command_that_wrote_cells(study, tmp_path, monkeypatch):
    """--render trains nothing: rendering with other variants must not claim their cells."""
    out = tmp_path / "variants"
    monkeypatch.setattr(study, "SuperGLUE", lambda task, input_format: _TinyStudy())
    words = ["--task", "rte", "--sizes", "4", "--runs", str(tmp_path / "runs"), "--out", str(out), "--lr", "1e-3"]
    monkeypatch.setattr(sys, "argv", ["variants_study.py", *words, "--variants", "pooled,dhrd", "--render"])
    study.main()
    assert not study.commands_path(out).exists() and out.with_suffix(".md").is_file()
