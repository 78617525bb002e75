"""One input-length policy and one home for the length defaults (``dhrd.data.lengths``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from transformers import AutoTokenizer

from dhrd.data.examples import Example
from dhrd.data.inputs import encode_examples
from dhrd.data.lengths import DEFAULT_MAX_LENGTH, SUPERGLUE_MAX_LENGTH, UNKNOWN_CONTEXT_LENGTH, encode_within
from dhrd.errors import DHRDInputError
from dhrd.inference.evaluation import encode_for_inference, inference_limits

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "reproduce"
TEXTS = ["a short one", " ".join(f"word {k}" for k in range(40)), "short", " ".join(f"long {k}" for k in range(30))]


def _message(call) -> str:
    with pytest.raises(DHRDInputError) as caught:
        call()
    return str(caught.value)


def test_training_rows_and_inference_stop_with_the_same_line(tiny_backbone):
    """A too-long row stops training and inference with one message: the file, the first row too long, how
    many are, and both ways out."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    # the user's rows, keyed by their 1-based row numbers, as data.file_example reads them
    rows = [Example(str(n), "custom", text, 0, str(n), source_idx=n) for n, text in enumerate(TEXTS, start=1)]
    training = _message(lambda: encode_examples(rows, tokenizer, 16, "error", "reviews.csv"))
    names = [f"row {number}" for number in range(1, len(TEXTS) + 1)]
    inference = _message(lambda: encode_for_inference(TEXTS, tokenizer, 16, "error", "reviews.csv", names))
    assert training == inference
    assert training.startswith("reviews.csv: row 2: ") and "2 of 4 inputs are longer than --max-length 16" in training
    assert "--truncation left" in training and "raise --max-length to" in training and "\n" not in training


def test_left_truncation_cuts_only_the_long_inputs_from_the_left(tiny_backbone):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    ids = encode_within(TEXTS, tokenizer, 16, "left", "t")
    full = tokenizer(TEXTS)["input_ids"]
    assert ids == [row if len(row) <= 16 else row[-16:] for row in full]
    with pytest.raises(DHRDInputError, match="--truncation must be 'error' or 'left', not 'right'"):
        encode_within(TEXTS, tokenizer, 16, "right", "t")


def test_the_length_defaults_have_one_home(tiny_backbone):
    from dhrd.benchmarks.training_benchmark import TrainBenchmarkArguments
    from dhrd.training.training_args import DHRDTrainingArguments

    assert DHRDTrainingArguments(task="cb").max_length == DEFAULT_MAX_LENGTH
    assert TrainBenchmarkArguments().max_length == SUPERGLUE_MAX_LENGTH
    configs = sorted(EXAMPLES.glob("*.toml"))
    assert configs
    for path in configs:
        train = tomllib.loads(path.read_text()).get("train", {})
        assert train.get("max_length", SUPERGLUE_MAX_LENGTH) == SUPERGLUE_MAX_LENGTH, path.name


def test_a_model_from_elsewhere_is_capped_at_its_context(tiny_backbone):
    from types import SimpleNamespace

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    tokenizer.model_max_length = int(1e30)  # what a tokenizer without a limit says
    # a model whose config names no context length, and no saved --max-length
    bare = SimpleNamespace(config=SimpleNamespace())
    assert inference_limits(bare, tokenizer, None, None) == (UNKNOWN_CONTEXT_LENGTH, "error")
    assert inference_limits(bare, tokenizer, 64, "left") == (64, "left")
