"""dhrd benchmark --train: the training step's throughput, pooled beside DHRD, on a tiny backbone."""

from __future__ import annotations

import json

import pytest
from conftest import assert_provenance
from typer.testing import CliRunner

from dhrd.benchmarks.training_benchmark import TrainBenchmarkArguments, benchmark_training, step_flops
from dhrd.cli.commands import app

runner = CliRunner()


def _rationales(tmp_path):
    from conftest import write_jsonl

    root = tmp_path / "rationales"
    write_jsonl(root / "CB" / "train.jsonl", [{"idx": i, "rationale": f"Ann said so {i}."} for i in range(12)])
    return root


def test_training_benchmark_measures_pooled_and_dhrd_side_by_side(tmp_path, tiny_backbone, superglue_dir):
    args = TrainBenchmarkArguments(
        task="cb",
        data_dir=str(superglue_dir),
        backbone=str(tiny_backbone),
        rationales=str(_rationales(tmp_path)),
        examples=8,
        variants=("default", "before"),
        max_length=128,
        output=str(tmp_path / "bench"),
        extra={"bf16": False, "per_device_train_batch_size": 4},
    )
    result = benchmark_training(args, progress=False)
    cells = {(c["variant"], c["method"]): c for c in result["cells"]}
    assert set(cells) == {("default", "pooled"), ("default", "dhrd"), ("before", "pooled"), ("before", "dhrd")}
    # the pooled rows are the 8 seeded examples' 24 input rows: their tokens, counted here with the tokenizer
    from dhrd.data.selection import sample_examples
    from dhrd.data.task_splits import load_task_split
    from dhrd.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_backbone))
    rows = sample_examples(load_task_split("cb", "train", "yesno", superglue_dir), 8, args.seed)
    input_tokens = sum(len(tokenizer(e.text)["input_ids"]) for e in rows)
    peak = result["gemm_peak"]["tflops"]
    for cell in cells.values():
        assert cell["rows"] == 24 and cell["steps"] == 6  # 8 CB examples x 3 relations, batch 4
        assert cell["real_tokens"] <= cell["padded_tokens"]
        assert cell["padding_share"] == pytest.approx(1 - cell["real_tokens"] / cell["padded_tokens"], abs=1e-4)
        # the rates are the counts over the measured seconds (stored rounded to 1 ms: that much relative slack)
        rel = 1e-3 + 5e-4 / cell["seconds"]
        assert cell["real_tokens_per_s"] == pytest.approx(cell["real_tokens"] / cell["seconds"], rel=rel)
        assert cell["rows_per_s"] == pytest.approx(24 / cell["seconds"], rel=rel)
        tflops = cell["useful_flops"] / cell["seconds"] / 1e12
        # both are stored rounded to 4 decimals: that half-unit adds to the slack of the rounded seconds
        # (pytest.approx takes the larger of rel and abs, not their sum, which failed once in CI)
        assert abs(cell["useful_tflops"] - tflops) <= 5e-5 + rel * tflops
        assert abs(cell["fraction_of_peak"] - tflops / peak) <= 5e-5 + (rel + 1e-3) * tflops / peak
        assert cell["seconds"] >= cell["steps"] * cell["seconds_per_step_median"] / 3  # no step timed as nothing
    assert cells[("default", "pooled")]["real_tokens"] == input_tokens
    # the same examples for both methods: DHRD's rows are the pooled rows with rationale and answer appended
    pooled, dhrd = cells[("default", "pooled")], cells[("default", "dhrd")]
    assert dhrd["real_tokens"] > pooled["real_tokens"] and dhrd["reasoning_targets"] > 0 == pooled["reasoning_targets"]
    overhead = {x["variant"]: x for x in result["dhrd_overhead"]}["default"]
    assert overhead["token_ratio"] == round(dhrd["real_tokens"] / pooled["real_tokens"], 3)
    assert {x["variant"] for x in result["speedup_over_before"]} == {"default"}
    padding = {x["method"]: x for x in result["epoch_padding"]}
    assert padding["pooled"]["rows"] == 36 and padding["pooled"]["grouped"] <= padding["pooled"]["random"]
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["cells"] == result["cells"]
    assert_provenance(saved["provenance"])
    text = (tmp_path / "bench.md").read_text()
    assert "real tok/s" in text and "DHRD / pooled time" in text and "Padding share of one epoch" in text
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_step_flops_count_weight_gradients_only_for_weights_that_train():
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=8, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, vocab_size=10
    )
    frozen = step_flops(config, body_weights=100, trainable_body=0, lengths=[3], targets=0, vocab_trainable=False)
    full = step_flops(config, body_weights=100, trainable_body=100, lengths=[3], targets=0, vocab_trainable=False)
    assert full - frozen == 2 * 100 * 3
    with_head = step_flops(config, 100, 0, [3], targets=2, vocab_trainable=False)
    assert with_head - frozen == 4 * 10 * 8 * 2


def test_cli_training_benchmark_rejects_unknown_variants(tmp_path):
    result = runner.invoke(app, ["benchmark", "--train", "--train-variants", "warp speed", "--output", str(tmp_path)])
    assert result.exit_code == 2 and "unknown training variant" in result.output


def test_the_pooled_cells_of_a_dhrd_only_variant_give_the_noise_between_cells():
    from dhrd.benchmarks.training_benchmark import noise_lines

    cells = [
        {"variant": "default", "method": "pooled", "seconds": 25.0},
        {"variant": "default", "method": "dhrd", "seconds": 40.0},
        {"variant": "one-piece LM loss", "method": "pooled", "seconds": 26.5},
        {"variant": "one-piece LM loss", "method": "dhrd", "seconds": 39.0},
        {"variant": "torch dropout", "method": "pooled", "seconds": 30.0},  # changes pooled too: not noise
    ]
    (line, _) = noise_lines(cells)
    assert "'one-piece LM loss'" in line and "differ by 6.0%" in line
    assert noise_lines([c for c in cells if c["variant"] != "one-piece LM loss"]) == []
