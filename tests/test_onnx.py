"""ONNX export (both heads, fp32 and int8) and the onnxruntime engine of predict and evaluate, on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_provenance
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from dhrd.cli.commands import app  # noqa: E402
from dhrd.inference.evaluation import evaluate, predict_proba  # noqa: E402
from dhrd.inference.int8_bar import judge  # noqa: E402
from dhrd.inference.onnx_engine import OnnxClassifier, load_onnx_classifier  # noqa: E402
from dhrd.inference.onnx_export import export_onnx  # noqa: E402
from dhrd.inference.onnx_graph import CHECK_TEXTS, INT8_FILE, METADATA_FILE, ONNX_FILE  # noqa: E402
from dhrd.inference.onnx_int8_check import check_rows, int8_check_line, refusal_line  # noqa: E402
from dhrd.inference.onnx_quantize import (  # noqa: E402
    INT8_CONFIG,
    QUANT_CONFIGS,
    head_nodes,
    quantize_int8,
    quantized_nodes,
)
from dhrd.modeling import build_classifier, load_classifier, save_classifier  # noqa: E402

runner = CliRunner()
LABELS = ("entailment", "contradiction", "neutral")
TEXTS = [
    "Ann said it certainly rained on day 3.",
    "maybe",
    "The museum is in Bilbao. The museum is in Spain. Is the answer correct Yes or No?",
    "the man turned the tap and water flowed",
]


def _saved(tiny_backbone, root, head: str):
    classifier, tokenizer, _ = build_classifier(str(tiny_backbone), LABELS, head=head, seed=1)
    spec = {"data": {"tasks": ["cb"], "input_format": "native"}, "max_length": 128, "truncation": "left"}
    return save_classifier(classifier, tokenizer, root / f"model-{head}", spec=spec, max_length=128)


@pytest.fixture(scope="module", params=["mlp", "linear"])
def exported(request, tiny_backbone, tmp_path_factory):
    """A saved tiny classifier of each head and its ONNX export with the int8 file."""
    root = tmp_path_factory.mktemp(f"onnx-{request.param}")
    model_dir = _saved(tiny_backbone, root, request.param)
    rows = root / "rows.jsonl"  # the rows int8 is checked on: the model's text column, no labels
    rows.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 3))
    # held to no bar: these tests are about the file (the bar has its own tests below)
    summary = export_onnx(model_dir, root / "export", quantize="int8", check_file=rows, int8_min_agreement=0)
    return model_dir, root / "export", summary


def test_export_is_self_contained_and_matches_torch(exported):
    model_dir, export_dir, summary = exported
    names = {p.name for p in export_dir.iterdir()}
    assert {ONNX_FILE, f"{ONNX_FILE}.data", INT8_FILE, "config.json", METADATA_FILE, "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith(".py") or n.endswith(".safetensors")]  # no code, no torch weights
    metadata = json.loads((export_dir / METADATA_FILE).read_text())
    assert metadata["labels"] == list(LABELS) and metadata["output"].keys() == {"logits"}
    assert metadata["head"] == summary.head
    assert_provenance(metadata["provenance"])

    model, tokenizer = load_classifier(model_dir)
    expected = predict_proba(model, tokenizer, TEXTS, batch_size=3, bf16=False, progress=False)
    engine, onnx_tokenizer = load_onnx_classifier(export_dir)
    got = predict_proba(engine, onnx_tokenizer, TEXTS, batch_size=3, bf16=False, progress=False)
    assert got.shape == (len(TEXTS), len(LABELS))
    np.testing.assert_allclose(got, expected, atol=1e-5)  # batches of 3 and 1 rows, other lengths than traced
    assert engine.config.id2label == model.config.id2label
    assert summary.max_abs_prob_diff["fp32"] < 1e-5

    int8, _ = load_onnx_classifier(export_dir / INT8_FILE)
    quantized = predict_proba(int8, onnx_tokenizer, TEXTS, batch_size=4, bf16=False, progress=False)
    assert np.abs(quantized - expected).max() < 0.05
    assert not np.array_equal(quantized, got)  # the int8 file is another graph, not a copy
    # every projection of the 2 layers (q, k, v, o, gate, up, down) in int8; the head stays fp32
    assert quantized_nodes(export_dir / INT8_FILE) == 14 and quantized_nodes(export_dir / ONNX_FILE) == 0


def test_padding_side_and_batching_do_not_change_the_onnx_probabilities(exported):
    """The pooled token comes from the mask inside the graph: a row's probabilities do not depend on its batch."""
    _, export_dir, _ = exported
    engine, tokenizer = load_onnx_classifier(export_dir)
    alone = np.concatenate([predict_proba(engine, tokenizer, [t], 1, bf16=False, progress=False) for t in TEXTS])
    together = predict_proba(engine, tokenizer, TEXTS, 4, bf16=False, progress=False, sort_by_length=False)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_cli_export_then_predict_and_evaluate_on_onnxruntime(tiny_backbone, superglue_dir, tmp_path):
    model_dir = _saved(tiny_backbone, tmp_path, "mlp")
    export_dir = tmp_path / "export"
    result = runner.invoke(app, ["export", "--model", str(model_dir), "--output", str(export_dir), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert (export_dir / ONNX_FILE).is_file() and not (export_dir / INT8_FILE).exists()
    assert "--engine onnxruntime" in result.output

    predictions = {}
    for engine, model in (("torch", model_dir), ("onnxruntime", export_dir)):
        output = tmp_path / f"{engine}.jsonl"
        args = ["predict", "--model", str(model), "--task", "cb", "--split", "validation"]
        args += ["--data-dir", str(superglue_dir), "--output", str(output), "--engine", engine]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        predictions[engine] = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(predictions["onnxruntime"]) == 6
    # torch runs bf16 autocast where the CPU has it: equal up to bf16 rounding
    for ours, theirs in zip(predictions["onnxruntime"], predictions["torch"]):
        assert ours["id"] == theirs["id"] and ours["prediction"] == theirs["prediction"]
        for label in LABELS:
            assert ours["probabilities"][label] == pytest.approx(theirs["probabilities"][label], abs=2e-3)

    result = runner.invoke(
        app, ["evaluate", "--model", str(export_dir), "--engine", "onnxruntime", "--data-dir", str(superglue_dir)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((export_dir / "eval-validation.json").read_text())
    reference = evaluate(model_dir, data_dir=str(superglue_dir), bf16=False)
    assert metrics["engine"] == "onnxruntime" and metrics["rows"] == 6
    assert metrics["score"] == pytest.approx(reference["score"])


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_paths_and_missing_exports_are_one_line_errors(exported, tmp_path):
    model_dir, export_dir, _ = exported
    out = str(tmp_path / "p.jsonl")
    result = runner.invoke(app, ["export", "--model", str(tmp_path / "none"), "--output", str(tmp_path / "e")])
    _one_line_error(result, "none", "no trained model here")
    result = runner.invoke(
        app, ["predict", "--model", str(model_dir), "--task", "cb", "--output", out, "--engine", "onnxruntime"]
    )
    _one_line_error(result, str(model_dir), "no ONNX export here", "dhrd export")
    result = runner.invoke(app, ["predict", "--model", str(export_dir), "--task", "cb", "--output", out])
    _one_line_error(result, "an ONNX export", "--engine onnxruntime")
    result = runner.invoke(app, ["export", "--model", str(export_dir), "--output", str(tmp_path / "e")])
    _one_line_error(result, "already an ONNX export")
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "none"), "--engine", "onnxruntime"])
    _one_line_error(result, "none", "no ONNX export here")
    args = ["predict", "--model", str(export_dir), "--task", "cb", "--output", out, "--engine", "onnxruntime"]
    _one_line_error(runner.invoke(app, [*args, "--compile"]), "--compile is for --engine torch")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["export", "--model", str(model_dir), "--output", str(tmp_path / "taken")])
    _one_line_error(result, "taken", "not an ONNX export")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"  # nothing of the user's is replaced


def test_benchmark_times_every_engine_on_the_same_inputs(exported, superglue_dir, tmp_path):
    """--onnx adds torch fp32 and onnxruntime fp32/int8 rows at every batch size, each with its probability
    difference from torch fp32, and the markdown says which is fastest and that the machine was shared."""
    from dhrd.benchmarks.benchmark import BenchmarkArguments, benchmark

    model_dir, _, _ = exported
    arguments = BenchmarkArguments(
        task="cb",
        data_dir=str(superglue_dir),
        dhrd=str(model_dir),
        zero_shot=False,
        fast_path=False,
        batch_sizes=(1, 4),
        repeats=2,
        bf16=False,
        onnx=True,
        output=str(tmp_path / "bench"),
    )
    result = benchmark(arguments)
    rows = result.engines["rows"]
    assert [(r["engine"], r["precision"], r["batch_size"]) for r in rows] == [
        (engine, precision, b)
        for b in (1, 4)
        for engine, precision in (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))
    ]
    by = {(r["engine"], r["precision"], r["batch_size"]): r for r in rows}
    assert by[("torch", "fp32", 4)]["max_abs_prob_diff"] == 0.0  # the reference itself
    assert by[("onnxruntime", "fp32", 4)]["max_abs_prob_diff"] < 1e-5
    assert 0 < by[("onnxruntime", "int8", 4)]["max_abs_prob_diff"] < 0.05
    assert by[("onnxruntime", "fp32", 1)]["score"] == by[("torch", "fp32", 1)]["score"]
    assert all(r["examples_per_s"] > 0 and r["ratio_to_torch_default"] > 0 for r in rows)
    assert by[("torch", "fp32", 1)]["ratio_to_torch_default"] == 1.0
    markdown = (tmp_path / "bench.md").read_text()
    assert "## Inference engines" in markdown and "Timed beside other load" in markdown
    assert markdown.count("Fastest for dhrd at batch") == 2
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["engines"]["rows"] == rows


def _absolute_roots(*folders) -> set[str]:
    """Paths of this machine that must not appear in a folder meant to be copied to another one."""
    import site
    import sys
    from pathlib import Path

    import dhrd

    roots = {str(Path(f).resolve()) for f in folders} | {str(Path(f)) for f in folders}
    roots |= {str(Path(dhrd.__file__).resolve().parent), sys.prefix, str(Path.home()), str(Path.cwd())}
    roots |= set(site.getsitepackages())
    return {r for r in roots if len(r) > 4}


def test_no_absolute_path_of_this_machine_in_a_saved_or_exported_folder(exported):
    """A model folder or its export is copied to servers and pushed to the Hub: the paths where it was made
    (the source files of torch and dhrd the exporter records per node, the model's own folder) stay behind."""
    model_dir, export_dir, _ = exported
    roots = _absolute_roots(model_dir.parent)
    for folder in (model_dir, export_dir):
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                leaked = sorted(r for r in roots if r.encode() in data)
                assert not leaked, f"{path.name} holds {leaked}"


def _initializer_types(path) -> dict[str, int]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {t.name: t.data_type for t in proto.graph.initializer}


def _head_weights_stay_fp32(int8_path) -> None:
    """The head's weights are float32 initializers of the int8 graph, and none has a quantized copy."""
    import onnx

    types = _initializer_types(int8_path)
    head = {name: kind for name, kind in types.items() if name.startswith("classifier.score.")}
    assert head and all(kind == onnx.TensorProto.FLOAT for kind in head.values()), head
    assert not [n for n in types if n.startswith("classifier.score.") and "quant" in n.lower()]


@pytest.mark.parametrize("name", [n for n, c in QUANT_CONFIGS.items() if c.head_fp32 and c.method != "static"])
def test_quantizations_that_keep_the_head_leave_it_in_fp32(exported, tmp_path, name):
    """The head (a Gemm/MatMul on the pooled token) is found in the graph and left out of quantization; the
    rest is quantized and the answers stay close to fp32's."""
    model_dir, export_dir, _ = exported
    heads = head_nodes(export_dir / ONNX_FILE)  # the MLP's two linears and its activation, or the one linear
    assert len([h for h in heads if not h.endswith(("_MatMul", "_Add"))]) == (3 if "mlp" in model_dir.name else 1)
    target = quantize_int8(export_dir / ONNX_FILE, tmp_path / "q.onnx", QUANT_CONFIGS[name])
    _head_weights_stay_fp32(target)
    fp32, tokenizer = load_onnx_classifier(export_dir)
    quantized = OnnxClassifier(target, fp32.config)
    want = predict_proba(fp32, tokenizer, TEXTS, batch_size=4, bf16=False, progress=False)
    got = predict_proba(quantized, tokenizer, TEXTS, batch_size=4, bf16=False, progress=False)
    assert np.abs(got - want).max() < 0.05


def test_export_int8_is_the_chosen_quantization_and_records_its_check(exported, tmp_path):
    """--quantize int8 writes INT8_CONFIG's graph, and onnx_export.json says how it agreed with torch fp32 and
    how fast it ran beside onnxruntime fp32 on the rows of --check-file."""
    from collections import Counter

    import onnx

    _, export_dir, summary = exported
    check = summary.int8_check
    assert check["quantization"] == INT8_CONFIG.name and check["description"] == INT8_CONFIG.describe()
    assert check["rows"] == 3 * len(TEXTS) and check["rows_source"] == "rows.jsonl"
    assert 0 <= check["labels_agreeing"] <= check["rows"]
    assert check["agreement"] == round(check["labels_agreeing"] / check["rows"], 4)
    assert 0 <= check["max_abs_prob_diff"] < 0.05
    assert check["fp32_examples_per_s"] > 0 and check["int8_examples_per_s"] > 0 and check["speedup"] > 0
    metadata = json.loads((export_dir / METADATA_FILE).read_text())
    assert metadata["int8"] == check
    fresh = quantize_int8(export_dir / ONNX_FILE, tmp_path / "fresh.onnx", INT8_CONFIG)
    ops = [
        Counter(n.op_type for n in onnx.load(str(p), load_external_data=False).graph.node)
        for p in (fresh, export_dir / INT8_FILE)
    ]
    assert ops[0] == ops[1]
    if INT8_CONFIG.head_fp32:
        _head_weights_stay_fp32(export_dir / INT8_FILE)


def test_export_from_python_warns_when_the_int8_file_is_not_kept(exported, tmp_path, caplog):
    """`int8_refused` alone was easy to miss: a caller from Python gets the refusal as a warning too, on a fresh
    export and on a rerun that re-judges the recorded check; the CLI, which ends with it as its error, turns it
    off."""
    model_dir, export_dir, _ = exported
    rows = export_dir.parent / "rows.jsonl"
    target = tmp_path / "refused"
    for warn in (True, False, True):
        caplog.clear()
        with caplog.at_level("WARNING", logger="dhrd.inference.onnx_export"):
            summary = export_onnx(
                model_dir, target, quantize="int8", check_file=rows, int8_min_agreement=1.01, warn_if_refused=warn
            )
        assert summary.int8_refused and not (target / INT8_FILE).exists()
        refusals = [r.getMessage() for r in caplog.records if "not kept" in r.getMessage()]
        assert refusals == ([refusal_line(summary.int8_check, target)] if warn else [])


def test_int8_check_rows_fall_back_to_the_task_then_to_the_built_in_texts(
    exported, superglue_dir, monkeypatch, tmp_path
):
    from dhrd.modeling import load_classifier as load

    model_dir, _, _ = exported
    classifier, _ = load(model_dir)
    monkeypatch.setenv("DHRD_DATA_DIR", str(superglue_dir))
    rows = check_rows(classifier, model_dir, None)
    assert len(rows.texts) == 6 and rows.source == "cb validation"
    assert all(label in (0, 1, 2) for label in rows.labels)  # the split's gold labels: accuracy is checked too
    monkeypatch.setenv("DHRD_DATA_DIR", str(tmp_path / "nothing"))
    rows = check_rows(classifier, model_dir, None)
    assert rows.texts == list(CHECK_TEXTS) and "built-in" in rows.source and rows.labels == [None] * 3


def test_int8_check_reads_the_data_file_the_run_recorded(exported, tmp_path, monkeypatch):
    """A run trained on a file records it relative to where training ran: found from the run directory."""
    from dhrd.inference.onnx_int8_check import _recorded_data_file

    model_dir, _, _ = exported
    run = tmp_path / "project" / "runs" / "mine"
    (run / "model").mkdir(parents=True)
    (tmp_path / "project" / "data").mkdir()
    (tmp_path / "project" / "data" / "valid.jsonl").write_text('{"text": "x"}\n')
    settings = {"output_dir": "runs/mine", "train_file": "data/train.jsonl", "validation_file": "data/valid.jsonl"}
    (run / "train_args.json").write_text(json.dumps(settings))
    monkeypatch.chdir(tmp_path)
    found = _recorded_data_file(run / "model")
    assert found is not None and found.resolve() == (tmp_path / "project" / "data" / "valid.jsonl").resolve()
    assert _recorded_data_file(model_dir) is None  # a model folder outside a run directory


def test_cli_export_int8_prints_agreement_and_speed_up(tiny_backbone, superglue_dir, tmp_path, monkeypatch):
    model_dir = _saved(tiny_backbone, tmp_path, "linear")
    monkeypatch.setenv("DHRD_DATA_DIR", str(superglue_dir))
    args = ["export", "--model", str(model_dir), "--output", str(tmp_path / "e"), "--quantize", "int8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"int8 ({INT8_CONFIG.describe()})" in text
    assert "torch fp32's label on" in text and "/6 rows" in text and "of cb validation" in text
    assert "on its 6 labelled rows" in text  # the split has gold labels: both accuracies are shown
    assert "x onnxruntime fp32's examples/s at batch 16" in text
    metadata = json.loads((tmp_path / "e" / METADATA_FILE).read_text())
    if metadata["int8"]["kept"]:  # the tiny model's int8 file met the default bar: kept
        assert (tmp_path / "e" / INT8_FILE).is_file() and metadata["files"]["int8"] == INT8_FILE
        assert metadata["int8"]["verdict"] == "bar met" and metadata["int8"]["min_agreement"] == 0.99


def _check(**changes) -> dict:
    """A recorded int8 check of 200 labelled rows that agreed on all of them."""
    check = {
        "quantization": INT8_CONFIG.name,
        "description": INT8_CONFIG.describe(),
        "rows": 200,
        "rows_source": "validation.jsonl, recorded by the run",
        "labels_agreeing": 200,
        "agreement": 1.0,
        "max_abs_prob_diff": 0.01,
        "batch_size": 16,
        "fp32_examples_per_s": 8.1,
        "int8_examples_per_s": 4.8,
        "speedup": 0.59,
        "flipped_near_ties": 0,
        "near_tie_margin": 0.05,
        "labelled_rows": 200,
        "fp32_accuracy": 55.0,
        "int8_accuracy": 55.0,
        "accuracy_change": 0.0,
    }
    return {**check, **changes}


def test_the_int8_bar_counts_rows_and_points_and_is_not_judged_on_the_built_in_texts():
    """198 of 200 meets 99% (counted, not rounded); 197 does not. Accuracy moved 0.5 points meets the default
    bar, 1.0 does not, whichever way; rows without labels and the built-in texts are said to be unjudged."""
    assert judge(_check(labels_agreeing=198, agreement=0.99), 0.99, 0.5)["kept"]
    refused = judge(_check(labels_agreeing=197, agreement=0.985, flipped_near_ties=3), 0.99, 0.5)
    assert not refused["kept"] and "98.5% of 200 rows" in refused["verdict"] and "99.0%" in refused["verdict"]
    line = refusal_line(refused, "exports/rte")
    assert "--int8_min_agreement 0" in line and "--int8_max_accuracy_change" not in line
    assert "exports/rte/model.onnx is exported whole" in line and "\n" not in line
    shown = int8_check_line(refused)
    assert "197/200 rows (98.5%)" in shown and "(3 flipped, 3 of them near ties" in shown
    assert "accuracy 55.0 -> 55.0 (+0.0 points) on its 200 labelled rows" in shown

    assert judge(_check(int8_accuracy=54.5, accuracy_change=-0.5), 0.99, 0.5)["kept"]
    for change in (-1.0, 1.0):
        moved = judge(_check(int8_accuracy=55.0 + change, accuracy_change=change), 0.99, 0.5)
        assert not moved["kept"] and f"{change:+.1f} points" in moved["verdict"]
        line = refusal_line(moved, "e")
        assert "--int8_max_accuracy_change 100" in line and "--int8_min_agreement" not in line
    assert judge(_check(accuracy_change=-3.0), 0.99, None)["kept"]  # no accuracy bar
    assert judge(_check(labels_agreeing=0, agreement=0.0), 0, 100)["kept"]  # the bar off

    unlabelled = _check(labelled_rows=0, fp32_accuracy=None, int8_accuracy=None, accuracy_change=None)
    assert judge(unlabelled, 0.99, 0.5)["kept"]
    assert "no gold labels in these rows: accuracy not checked" in int8_check_line(unlabelled)
    builtin = _check(rows=3, labels_agreeing=1, agreement=0.3333, rows_source="the 3 built-in check texts")
    builtin = judge({**builtin, "labelled_rows": 0, "accuracy_change": None}, 0.99, 0.5)
    assert builtin["kept"] and builtin["verdict"].startswith("bar not judged")
    shown = int8_check_line(builtin)
    assert "bar (--int8_min_agreement) is not judged and the file is kept" in shown and "no gold labels" not in shown


def test_cli_export_int8_below_the_bar_keeps_the_fp32_export_alone(tiny_backbone, superglue_dir, tmp_path, monkeypatch):
    """An int8 file under --int8-min-agreement is never renamed into the export: one line on stderr, code 2;
    model.onnx is whole and serves predict; onnx_export.json says why; the same command again says the same
    without exporting again; --int8_min_agreement 0 keeps the file."""
    model_dir = _saved(tiny_backbone, tmp_path, "mlp")
    monkeypatch.setenv("DHRD_DATA_DIR", str(superglue_dir))
    export_dir = tmp_path / "e"
    args = ["export", "--model", str(model_dir), "--output", str(export_dir), "--quantize", "int8"]
    stamps = []
    for _ in range(2):
        result = runner.invoke(app, [*args, "--int8_min_agreement", "1.01"])  # above any agreement reached
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert errors and errors[-1].startswith("error: ") and sum("error" in line for line in errors) == 1, errors
        assert f"{INT8_FILE} not kept" in errors[-1] and "of 6 rows of cb validation" in errors[-1]
        assert "under the bar of 101.0% (--int8_min_agreement)" in errors[-1]
        assert "export again with --int8_min_agreement 0" in errors[-1]
        stamps.append((export_dir / ONNX_FILE).stat().st_mtime_ns)
        text = " ".join(result.stdout.split())
        assert "torch fp32's label on" in text and f"fp32: {export_dir / ONNX_FILE}" in text
        assert not (export_dir / INT8_FILE).exists() and not list(tmp_path.glob(".e.*"))
        metadata = json.loads((export_dir / METADATA_FILE).read_text())
        assert metadata["files"] == {"fp32": ONNX_FILE} and metadata["max_abs_prob_diff_vs_torch_fp32"].keys() == {
            "fp32"
        }
        assert metadata["int8"]["kept"] is False and metadata["int8"]["min_agreement"] == 1.01
        assert "--int8_min_agreement" in metadata["int8"]["verdict"] and metadata["int8"]["rows"] == 6
    assert stamps[0] == stamps[1]  # the same command again: the recorded check judged again, the same refusal

    model, tokenizer = load_classifier(model_dir)
    expected = predict_proba(model, tokenizer, TEXTS, batch_size=2, bf16=False, progress=False)
    engine, onnx_tokenizer = load_onnx_classifier(export_dir)
    np.testing.assert_allclose(
        predict_proba(engine, onnx_tokenizer, TEXTS, 2, bf16=False, progress=False), expected, atol=1e-5
    )
    output = tmp_path / "p.jsonl"
    predict = ["predict", "--model", str(export_dir), "--engine", "onnxruntime", "--task", "cb"]
    result = runner.invoke(app, [*predict, "--split", "validation", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert len(output.read_text().splitlines()) == 6

    result = runner.invoke(app, [*args, "--int8_min_agreement", "0", "--int8-max-accuracy-change", "100"])
    assert result.exit_code == 0, result.output
    assert (export_dir / ONNX_FILE).stat().st_mtime_ns != stamps[0]  # the refused file is made again, and kept
    metadata = json.loads((export_dir / METADATA_FILE).read_text())
    assert metadata["files"]["int8"] == INT8_FILE and (export_dir / INT8_FILE).is_file()
    assert metadata["int8"]["kept"] is True and metadata["int8"]["verdict"] == "bar met"
    assert metadata["int8"]["min_agreement"] == 0 and metadata["int8"]["max_accuracy_change"] == 100

    result = runner.invoke(app, [*args, "--int8_min_agreement", "-0.5"])
    _one_line_error(result, "--int8-min-agreement -0.5", "0.99 for 99%")
    assert (export_dir / INT8_FILE).is_file()  # a bad option changes nothing


def test_cli_export_int8_on_the_built_in_texts_keeps_the_file_and_says_the_bar_was_not_judged(
    tiny_backbone, tmp_path, monkeypatch
):
    model_dir = _saved(tiny_backbone, tmp_path, "linear")
    monkeypatch.setenv("DHRD_DATA_DIR", str(tmp_path / "nothing"))  # no rows of the model's task to check on
    args = ["export", "--model", str(model_dir), "--output", str(tmp_path / "e"), "--quantize", "int8"]
    result = runner.invoke(app, [*args, "--int8-min-agreement", "1.01"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "of the 3 built-in check texts" in text and "bar (--int8_min_agreement) is not judged" in text
    assert (tmp_path / "e" / INT8_FILE).is_file()
    metadata = json.loads((tmp_path / "e" / METADATA_FILE).read_text())
    assert metadata["int8"]["kept"] is True and metadata["int8"]["verdict"].startswith("bar not judged")
