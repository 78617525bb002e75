"""Fixtures: a tiny Llama and tokenizer built from a config (seconds), tiny SuperGLUE-format files, and the
shared SmolLM2 / SuperGLUE data for integration tests (skipped with a reason when ../shared is absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dhrd.openmp import passive_openmp_wait

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DHRD_SHARED", REPO.parent / "shared"))
SHARED_GGUF = SHARED / "models" / "smollm2-135m-instruct-q4_1" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SHARED_SUPERGLUE = SHARED / "data" / "superglue"

# One conversion cache for every test run on this machine: the GGUF is dequantised once (about 25 s).
os.environ.setdefault("DHRD_CACHE", str(REPO / ".cache" / "dhrd"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# torch's threads sleep between operations, as under the dhrd command: a suite run beside a training (two queues on
# a 2-core machine) otherwise spins on the cores the training needs, and waits on them itself (dhrd.openmp)
passive_openmp_wait()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def assert_provenance(record: dict) -> None:
    """Every run, cache, export and table holds the one record of ``dhrd.provenance``, with the same keys."""
    from dhrd.provenance import PROVENANCE_KEYS

    assert tuple(record) == PROVENANCE_KEYS, record
    assert {"dhrd", "python", "torch", "transformers"} <= set(record["versions"])
    assert set(record["machine"]) == {"cpu", "cpu_count", "torch_threads", "bf16_supported", "gpu"}


def _cb_rows(n: int, offset: int = 0) -> list[dict]:
    labels = ["entailment", "contradiction", "neutral"]
    rows = []
    for i in range(n):
        label = labels[i % 3]
        word = {"entailment": "certainly", "contradiction": "never", "neutral": "maybe"}[label]
        rows.append(
            {
                "premise": f"Ann said it {word} rained on day {i + offset}.",
                "hypothesis": "it rained",
                "label": label,
                "idx": i,
            }
        )
    return rows


def _copa_rows(n: int) -> list[dict]:
    return [
        {
            "premise": f"The man {i} turned on the tap.",
            "choice1": "Water flowed.",
            "choice2": "The sun set.",
            "question": "effect" if i % 2 else "cause",
            "label": i % 2,
            "idx": i,
        }
        for i in range(n)
    ]


def _rte_rows(n: int) -> list[dict]:
    return [
        {
            "premise": f"The museum {i} is in Bilbao.",
            "hypothesis": "The museum is in Spain.",
            "label": "entailment" if i % 2 else "not_entailment",
            "idx": i,
        }
        for i in range(n)
    ]


def _multirc_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        questions = [
            {
                "question": f"Who came {q}?",
                "idx": q,
                "answers": [{"text": "Ann", "idx": 0, "label": 1}, {"text": "Bob", "idx": 1, "label": q % 2}],
            }
            for q in range(2)
        ]
        rows.append({"idx": i, "version": 1.1, "passage": {"text": f"Ann came on day {i}.", "questions": questions}})
    return rows


@pytest.fixture(scope="session")
def superglue_dir(tmp_path_factory) -> Path:
    """Tiny files in the official SuperGLUE jsonl layout."""
    root = tmp_path_factory.mktemp("superglue")
    write_jsonl(root / "CB" / "train.jsonl", _cb_rows(12))
    write_jsonl(root / "CB" / "val.jsonl", _cb_rows(6, 100))
    write_jsonl(root / "CB" / "test.jsonl", [{k: v for k, v in r.items() if k != "label"} for r in _cb_rows(3)])
    write_jsonl(root / "COPA" / "train.jsonl", _copa_rows(8))
    write_jsonl(root / "COPA" / "val.jsonl", _copa_rows(4))
    write_jsonl(root / "RTE" / "train.jsonl", _rte_rows(8))
    write_jsonl(root / "RTE" / "val.jsonl", _rte_rows(4))
    write_jsonl(root / "MultiRC" / "train.jsonl", _multirc_rows(3))
    write_jsonl(root / "MultiRC" / "val.jsonl", _multirc_rows(2))
    return root


CORPUS = [
    "Passage: Question: Answer: Is the answer correct Yes or No? Reasoning: Final Answer:",
    "The passage entails contradicts neither the hypothesis relation between what is",
    "Ann said it certainly never maybe rained on day the man turned tap water flowed sun set",
    "museum Bilbao Spain premise choice cause effect result good bad great awful movie film plot",
    "0123456789 . , ? ! \" ' : ; - * ( )",
]


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A 2-layer Llama (hidden 32) with a byte-level BPE tokenizer, saved as a normal HF model directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(root)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def shared_superglue() -> Path:
    if not (SHARED_SUPERGLUE / "CB" / "train.jsonl").is_file():
        pytest.skip(f"SuperGLUE data not found at {SHARED_SUPERGLUE} (../shared is absent)")
    return SHARED_SUPERGLUE


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The shared SmolLM2-135M-Instruct, converted once from its GGUF to a cached HF directory."""
    if not SHARED_GGUF.is_file():
        pytest.skip(f"shared SmolLM2 GGUF not found at {SHARED_GGUF} (../shared is absent)")
    pytest.importorskip("gguf", reason="loading a GGUF needs the gguf package")
    from dhrd.modeling import resolve_backbone

    return resolve_backbone(str(SHARED_GGUF))


def tiny_run(backbone, data_dir, **overrides) -> dict:
    """Arguments of a seconds-long training run on the tiny model and the tiny CB files."""
    settings = dict(
        task="cb",
        data_dir=str(data_dir),
        backbone=str(backbone),
        num_train_epochs=1,
        per_device_train_batch_size=4,
        bf16=False,
        max_length=128,
    )
    settings.update(overrides)
    return settings


def loss_trainer(backbone, tmp_path, n: int = 4, **settings):
    """A DHRDTrainer built the one way on ``n`` rows of the user's own data, each with the rationale "reason
    number i" repeated i + 1 times, over a causal LM loaded here (so a test can compute the LM loss by hand):
    the trainer, its classifier (full fine-tuning unless ``lora=True``), the causal LM and a batch of all its
    training rows. ``settings``: DHRDTrainingArguments fields (alpha, beta, ...)."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dhrd.data.inputs import ClassificationCollator
    from dhrd.training.trainer import DHRDTrainer
    from dhrd.training.training_args import DHRDTrainingArguments

    lm = AutoModelForCausalLM.from_pretrained(backbone)
    rows = datasets.Dataset.from_dict(
        {
            "text": [f"Passage:\nday {i} row 0" for i in range(n)],
            "label": [("No", "Yes")[i % 2] for i in range(n)],
            "why": [f"reason number {i} " * (i + 1) for i in range(n)],
        }
    )
    base = dict(output_dir=str(tmp_path / "run"), rationale_column="why", lora=False, max_length=128, bf16=False)
    base.update(method="dhrd", max_rationale_tokens=64, seed=0, report_to="none")
    args = DHRDTrainingArguments(**{**base, **settings})
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    trainer = DHRDTrainer(model=lm, args=args, train_dataset=rows, eval_dataset=rows, processing_class=tokenizer)
    model = trainer.model
    classifier = model.get_base_model() if hasattr(model, "get_base_model") else model
    batch = ClassificationCollator(trainer.prepared.tokenizer.pad_token_id)(list(trainer.train_dataset))
    return trainer, classifier, lm, batch


# a process that holds a run directory's training lock (dhrd.training.run_lock) until it is killed
LOCK_HOLDER = """
import sys, time
from dhrd.training.run_lock import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """Another process holding ``tmp_path / 'run'``'s training lock until the test ends (or kills it)."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()
