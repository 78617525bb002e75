"""DHRD training: the reasoning head, the weighted loss in one pass, rationale modes."""

import json

import numpy as np
import pytest
import torch
from conftest import loss_trainer, tiny_run, write_jsonl
from safetensors.torch import load_file
from transformers import AutoTokenizer

from dhrd import DHRDTrainingArguments, train
from dhrd.data.examples import Example
from dhrd.data.inputs import (
    ANSWER_PREFIX,
    REASON_PREFIX,
    ClassificationCollator,
    add_reasoning_targets,
    encode_examples,
)
from dhrd.data.rationales import pair_rationales, read_rationales
from dhrd.data.task_splits import load_task_split
from dhrd.errors import DHRDInputError
from dhrd.training.loss_terms import reasoning_loss_sum


def _rows(n=4, per_group=1):
    return [
        Example(f"e{i}-{k}", "cb", f"Passage:\nday {i} row {k}", (i + k) % 2, f"g{i}", None, i)
        for i in range(n)
        for k in range(per_group)
    ]


def test_training_sequence_extends_the_exact_input_ids(tiny_backbone):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    rows = _rows(3)
    features = encode_examples(rows, tokenizer, 128, "error", "t")
    inputs = [list(f["input_ids"]) for f in features]
    paired = [("because it rained", None), (None, None), ("the sun set", None)]
    missing = add_reasoning_targets(features, rows, tokenizer, ("No", "Yes"), paired, 64, "all", "consistent")
    assert missing == 1
    for feature, x, row, (rationale, _) in zip(features, inputs, rows, paired):
        assert feature["input_ids"][: len(x)] == x  # the prefix invariant
        assert feature["pool_index"] == len(x) - 1
        if rationale is None:  # no rationale: classification only, no LM target
            assert feature["input_ids"] == x and set(feature["lm_labels"]) == {-100}
            continue
        suffix = tokenizer.decode(feature["input_ids"][len(x) :])
        label = ("No", "Yes")[row.label]
        assert suffix == f"{REASON_PREFIX}{rationale}{ANSWER_PREFIX}{label}{tokenizer.eos_token}"
        assert feature["lm_labels"] == feature["input_ids"]
    reasoning_only = encode_examples(rows[:1], tokenizer, 128, "error", "t")
    add_reasoning_targets(reasoning_only, rows[:1], tokenizer, ("No", "Yes"), paired[:1], 64, "reasoning", "consistent")
    assert reasoning_only[0]["lm_labels"][: len(inputs[0])] == [-100] * len(inputs[0])
    batch = ClassificationCollator(tokenizer.pad_token_id)(features)
    assert batch["lm_labels"].shape == batch["input_ids"].shape
    assert (batch["lm_labels"][batch["attention_mask"] == 0] == -100).all()  # padding never counts


def test_only_label_sequences_have_no_rationale(tiny_backbone):
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    rows = _rows(2)
    features = encode_examples(rows, tokenizer, 128, "error", "t")
    x = list(features[0]["input_ids"])
    paired = pair_rationales(rows, {"cb": {0: "r0", 1: "r1"}}, "only_label", 0)
    assert add_reasoning_targets(features, rows, tokenizer, ("No", "Yes"), paired, 64, "all", "only_label") == 0
    assert tokenizer.decode(features[0]["input_ids"][len(x) :]) == f"{ANSWER_PREFIX}No{tokenizer.eos_token}"


def test_rationale_modes_are_seeded_and_move_whole_examples():
    rows = _rows(5, per_group=2)
    by_task = {"cb": {i: f"r{i}" for i in range(5)}}
    assert [r for r, _ in pair_rationales(rows, by_task, "consistent", 0)] == [f"r{i}" for i in range(5) for _ in "ab"]
    shuffled = pair_rationales(rows, by_task, "shuffle_reasoning", 7)
    assert shuffled == pair_rationales(rows, by_task, "shuffle_reasoning", 7)
    assert shuffled != pair_rationales(rows, by_task, "shuffle_reasoning", 8)
    for k in range(0, 10, 2):
        assert shuffled[k] == shuffled[k + 1]  # both rows of an example get the same foreign rationale
        assert shuffled[k][0] != f"r{k // 2}" and shuffled[k][1] is None
    both = pair_rationales(rows, by_task, "shuffle_both", 7)
    assert [r for r, _ in both] == [r for r, _ in shuffled]
    assert all(rows[d].group != rows[i].group for i, (_, d) in enumerate(both))
    with pytest.raises(DHRDInputError, match="unknown rationale mode"):
        pair_rationales(rows, by_task, "random", 0)


@pytest.mark.parametrize("mode", ["shuffle_both", "shuffle_reasoning", "consistent"])
def test_the_label_word_written_into_each_training_sequence(tmp_path, tiny_backbone, superglue_dir, mode):
    """Through train()'s own data path: shuffle_both ends each sequence with the label word of the example whose
    rationale it got; the other modes with the row's own label word."""
    from dhrd.training.trainer import prepare_run

    rationales = write_jsonl(tmp_path / "rte.jsonl", [{"idx": i, "rationale": f"reason number {i}"} for i in range(8)])
    args = DHRDTrainingArguments(
        **tiny_run(tiny_backbone, superglue_dir, task="rte", method="dhrd", rationales=str(rationales)),
        output_dir=str(tmp_path / "run"),
        rationale_mode=mode,
        seed=3,
    )
    run = prepare_run(args, save_strategy="no", eval_strategy="no", load_best_model_at_end=False)
    tokenizer = run.tokenizer
    records = [json.loads(line) for line in (superglue_dir / "RTE" / "train.jsonl").read_text().splitlines()]
    gold = {r["idx"]: "Yes" if r["label"] == "entailment" else "No" for r in records}
    donors = []
    for feature, row in zip(run.trainer.train_dataset, run.train_rows):
        suffix = tokenizer.decode(feature["input_ids"][feature["pool_index"] + 1 :])
        reason, _, answer = suffix.partition(ANSWER_PREFIX)
        assert reason.startswith(REASON_PREFIX + "reason number ") and answer.endswith(tokenizer.eos_token)
        donor = int(reason.rsplit(" ", 1)[1])
        donors.append(donor)
        label_word = answer[: -len(tokenizer.eos_token)]
        assert label_word == gold[donor if mode == "shuffle_both" else row.source_idx], (mode, row.id, suffix)
        assert label_word == ("No", "Yes")[row.label] or mode == "shuffle_both"
    own = [r.source_idx for r in run.train_rows]
    assert (donors == own) == (mode == "consistent")
    if mode == "shuffle_both":  # some donor's label differs from the row's own: the test can tell them apart
        assert any(gold[d] != gold[o] for d, o in zip(donors, own))


def test_loss_is_beta_ce_plus_alpha_token_mean(tiny_backbone, tmp_path):
    trainer, classifier, lm, batch = loss_trainer(tiny_backbone, tmp_path, alpha=0.5, beta=2.0)
    assert (trainer.alpha, trainer.beta) == (0.5, 2.0)  # the loss's settings are the arguments'
    classifier.eval()
    features, collate = list(trainer.train_dataset), trainer.data_collator
    loss = trainer.compute_loss(classifier, batch)
    # reference: the LM loss as transformers computes it (a mean over all valid tokens of the batch)
    with torch.no_grad():
        full = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["lm_labels"])
        cls = torch.nn.functional.cross_entropy(
            classifier(**{k: batch[k] for k in ("input_ids", "attention_mask", "pool_index")}).logits, batch["labels"]
        )
    torch.testing.assert_close(loss, 2.0 * cls + 0.5 * full.loss, atol=1e-4, rtol=1e-4)
    # gradient accumulation: two micro-batches normalised by the tokens of both add up to the whole
    first, second = collate(features[:1]), collate(features[1:])
    tokens = sum((b["lm_labels"][:, 1:] != -100).sum() for b in (first, second))
    trainer.alpha, trainer.beta = 1.0, 0.0
    trainer.current_gradient_accumulation_steps = 2
    classifier.train()
    for module in classifier.modules():  # dropout off, training branch on
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    split = trainer.compute_loss(classifier, first, num_items_in_batch=tokens) + trainer.compute_loss(
        classifier, second, num_items_in_batch=tokens
    )
    torch.testing.assert_close(split, full.loss, atol=1e-4, rtol=1e-4)
    # and the pooled baseline (alpha = 0) ignores the LM targets entirely
    trainer.alpha, trainer.beta = 0.0, 1.0
    classifier.eval()
    torch.testing.assert_close(trainer.compute_loss(classifier, batch), cls, atol=1e-5, rtol=1e-5)


def test_the_chunked_lm_loss_trains_with_the_one_piece_gradients(tiny_backbone, tmp_path, monkeypatch):
    """--chunked-lm-loss (the default) and --no-chunked-lm-loss: the same loss and the same gradient on every
    parameter that trains, the tied embeddings (so the reasoning head) among them."""
    from dhrd.training import lm_loss

    monkeypatch.setattr(lm_loss, "_CHUNK_ELEMENTS", 400 * 7)  # several chunks of the tiny vocabulary
    gradients = {}
    for chunked in (True, False):
        trainer, classifier, _, batch = loss_trainer(tiny_backbone, tmp_path / str(chunked), chunked_lm_loss=chunked)
        classifier.eval()  # no dropout: the two passes see the same network
        loss = trainer.compute_loss(classifier, batch)
        loss.backward()
        gradients[chunked] = {n: p.grad.clone() for n, p in classifier.named_parameters() if p.grad is not None}
        gradients[chunked]["loss"] = loss.detach()
    assert gradients[True].keys() == gradients[False].keys()
    assert any("embed" in name for name in gradients[True])
    for name in gradients[True]:
        torch.testing.assert_close(gradients[True][name], gradients[False][name], atol=1e-6, rtol=1e-5, msg=name)


def test_reasoning_loss_sum_counts_only_valid_targets():
    weight = torch.randn(11, 4)
    hidden = torch.randn(2, 5, 4)
    labels = torch.tensor([[1, 2, 3, -100, -100], [-100, -100, 4, 5, 6]])
    total, count = reasoning_loss_sum(weight, hidden, labels)
    logits = hidden @ weight.T
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
    )
    assert count == 5
    torch.testing.assert_close(total, expected)


def test_dhrd_train_end_to_end_saves_the_same_classifier_as_pooled(tmp_path, tiny_backbone, superglue_dir):
    rationales = write_jsonl(
        tmp_path / "cb.jsonl", [{"idx": i, "rationale": f"Ann said so on day {i}."} for i in range(10)]
    )  # 2 of 12 examples have none
    common = tiny_run(tiny_backbone, superglue_dir, head="linear", logging_steps=1)
    dhrd_run = train(
        DHRDTrainingArguments(output_dir=str(tmp_path / "dhrd"), method="dhrd", rationales=str(rationales), **common)
    )
    pooled_run = train(DHRDTrainingArguments(output_dir=str(tmp_path / "pooled"), **common))
    assert dhrd_run.metrics["rows_without_rationale"] == 2 * 3  # CB rows are per relation
    assert pooled_run.metrics["rows_without_rationale"] is None
    # the reasoning loss was in the optimised loss: the tiny backbone's LM is untrained, so its token loss is
    # about ln(vocabulary) = ln(400) = 6 on top of a classification loss of about ln(2) = 0.7 in both runs
    logged = {}
    for name in ("dhrd", "pooled"):
        (state,) = (tmp_path / name / "checkpoints").glob("checkpoint-*/trainer_state.json")
        logged[name] = [h["loss"] for h in json.loads(state.read_text())["log_history"] if "loss" in h]
    assert len(logged["dhrd"]) == len(logged["pooled"]) == 9  # 36 rows, batch 4, a loss logged every step
    assert all(0.3 < loss < 1.5 for loss in logged["pooled"]), logged
    # (a batch of only the 6 rows without a rationale would have no reasoning loss: most steps have one)
    assert sum(loss > 4.0 for loss in logged["dhrd"]) >= 6 and np.mean(logged["dhrd"]) > np.mean(logged["pooled"]) + 3
    a = load_file(str(dhrd_run.model_dir / "model.safetensors"))
    b = load_file(str(pooled_run.model_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    config = json.loads((dhrd_run.model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config["dhrd"]["method"] == "dhrd"


def test_dhrd_errors(tmp_path, tiny_backbone, superglue_dir):
    base = dict(task="cb", data_dir=str(superglue_dir), backbone=str(tiny_backbone), output_dir=str(tmp_path))
    with pytest.raises(DHRDInputError, match="method pooled is alpha = 0"):
        train(DHRDTrainingArguments(alpha=1.0, **base))
    with pytest.raises(DHRDInputError, match="rationale file not found"):
        train(DHRDTrainingArguments(method="dhrd", rationales=str(tmp_path / "none"), **base))
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"idx": 0, "rationale": "fine"}\n{"idx": 1, "ratio')  # killed mid-line
    assert read_rationales(torn) == {"0": "fine"}


@pytest.mark.integration
def test_reference_rationales_cover_the_shared_train_splits(shared_superglue):
    from dhrd.data.rationales import default_rationale_dir, rationale_file

    if default_rationale_dir() is None:
        pytest.skip("no shared rationales")
    for task in ("cb", "copa", "rte", "wsc"):
        rationales = read_rationales(rationale_file(None, task))
        rows = load_task_split(task, "train", "yesno", shared_superglue)
        assert {str(r.source_idx) for r in rows} <= set(rationales), task


def test_two_cpu_processes_match_one(tmp_path, tiny_backbone, superglue_dir):
    """``accelerate launch`` with 2 processes (gloo on CPU) trains the same model as one process with the
    same global batch: the token-mean LM loss is normalised over both processes' tokens."""
    import os
    import subprocess
    import sys

    rationales = write_jsonl(
        tmp_path / "cb.jsonl", [{"idx": i, "rationale": f"Ann said so {'again ' * i}."} for i in range(12)]
    )
    common = [
        "train",
        "--task",
        "cb",
        "--data-dir",
        superglue_dir,
        "--backbone",
        tiny_backbone,
        "--method",
        "dhrd",
        "--rationales",
        rationales,
        "--epochs",
        "1",
        "--full",
        "--head",
        "linear",
        "--lr",
        "1e-3",
        "--no-bf16",
        "--max-length",
        "128",
        "--warmup-steps",
        "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = [sys.executable, "-m", "dhrd", *common, "--batch-size", "4", "--output-dir", tmp_path / "one"]
    two = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "dhrd",
        *common,
        "--batch-size",
        "2",
        "--output-dir",
        tmp_path / "two",
    ]
    for command in (one, two):
        done = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["processes"] == 2
    a = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-3, msg=key)


@pytest.mark.parametrize("lora", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients_with_both_heads(tiny_backbone, tmp_path, lora):
    grads = []
    for checkpointing in (False, True):
        settings = dict(lora=lora, lora_dropout=0.0, head_dropout=0.0, gradient_checkpointing=checkpointing)
        trainer, _, _, batch = loss_trainer(tiny_backbone, tmp_path / str(checkpointing), n=3, **settings)
        model = trainer.model
        model.train()
        trainer.compute_loss(model, batch).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("lora_B" in n for n in grads[0]) == lora
    assert any("score" in n for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4, msg=name)


def test_explain_uses_the_kept_reasoning_head(tmp_path, tiny_backbone, superglue_dir, monkeypatch):
    from typer.testing import CliRunner

    import dhrd.cot.baseline
    import dhrd.inference.evaluation
    from dhrd.cli.commands import app
    from dhrd.cot.explain import explain, reasoning_lm
    from dhrd.inference.evaluation import predict_proba
    from dhrd.modeling import load_classifier

    rationales = write_jsonl(tmp_path / "cb.jsonl", [{"idx": i, "rationale": "Ann said so."} for i in range(12)])
    common = tiny_run(tiny_backbone, superglue_dir, method="dhrd", rationales=str(rationales))
    kept = train(DHRDTrainingArguments(output_dir=str(tmp_path / "kept"), keep_reasoning_head=True, **common))
    texts = ["Passage:\nAnn said it rained.", "Passage:\nBob"]
    for module in (
        dhrd.cot.baseline,
        dhrd.inference.evaluation,
    ):  # fp32 decoding, so that a token-by-token reference is exact
        monkeypatch.setattr(module, "bf16_supported", lambda: False)
    results = explain(kept.model_dir, texts, max_new_tokens=8)
    assert len(results) == 2
    # the kept head is the tied backbone's embedding matrix (LoRA leaves it as it was)
    classifier, tokenizer = load_classifier(kept.model_dir)
    head = load_file(str(kept.model_dir / "reasoning_head.safetensors"))["lm_head.weight"]
    original = load_file(str(tiny_backbone / "model.safetensors"))["model.embed_tokens.weight"]
    torch.testing.assert_close(head, original)
    # reference: greedy decoding, one token at a time, of the saved backbone's last hidden state times that head,
    # from x + "Reasoning:" tokenised as in training
    reason = tokenizer(REASON_PREFIX, add_special_tokens=False)["input_ids"]
    probs = predict_proba(classifier, tokenizer, texts, bf16=False, progress=False)
    for text, result, p in zip(texts, results, probs):
        ids, new = tokenizer(text)["input_ids"] + reason, []
        with torch.no_grad():
            while len(new) < 8:
                hidden = classifier.model(input_ids=torch.tensor([ids + new])).last_hidden_state[0, -1]
                token = int((hidden @ head.T).argmax())
                if token == tokenizer.eos_token_id:
                    break
                new.append(token)
        written = tokenizer.decode(new, skip_special_tokens=True)
        assert result["rationale"] == written.partition(ANSWER_PREFIX.strip())[0].strip()
        # (the tiny model writes little after one epoch: the language model explain decodes with is checked too)
        lm, _, _ = reasoning_lm(kept.model_dir)
        with torch.no_grad():
            logits = lm(input_ids=torch.tensor([ids + new])).logits[0]
            hidden = classifier.model(input_ids=torch.tensor([ids + new])).last_hidden_state[0]
        torch.testing.assert_close(logits, hidden @ head.T, atol=1e-5, rtol=1e-5)
        assert result["probabilities"] == {n: round(float(x), 6) for n, x in zip(("No", "Yes"), p)}
        assert result["prediction"] == ("No", "Yes")[int(p.argmax())] and result["input"] == text
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "explain",
            "--model",
            str(kept.model_dir),
            "--task",
            "cb",
            "--data-dir",
            str(superglue_dir),
            "--max-examples",
            "1",
            "--max-new-tokens",
            "4",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "not used for predictions" in done.output and "classifier prediction" in done.output
    plain = train(DHRDTrainingArguments(output_dir=str(tmp_path / "plain"), **common))
    done = runner.invoke(app, ["explain", "--model", str(plain.model_dir), "--text", "x"])
    assert done.exit_code == 2 and "--keep-reasoning-head" in done.output


@pytest.fixture(scope="module")
def untied_backbone(tiny_backbone, tmp_path_factory):
    """The tiny Llama with an untied LM head (as Qwen2.5-Coder-0.5B and the paper's larger backbones have),
    its head drawn apart from the embeddings so that using the wrong matrix shows."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    root = tmp_path_factory.mktemp("untied")
    tied = LlamaForCausalLM.from_pretrained(tiny_backbone)
    config = tied.config
    config.tie_word_embeddings = False
    untied = LlamaForCausalLM(config)
    untied.model.load_state_dict(tied.model.state_dict())
    torch.manual_seed(1)
    untied.lm_head.weight.data.normal_(0, 0.5)
    untied.save_pretrained(root)
    AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(root)
    return root


def test_an_untied_reasoning_head_is_the_lm_head_and_stays_frozen(untied_backbone, superglue_dir, tmp_path):
    from transformers import LlamaForCausalLM

    original = LlamaForCausalLM.from_pretrained(untied_backbone)
    head, embeddings = original.lm_head.weight.detach().clone(), original.model.embed_tokens.weight.detach()
    assert not torch.allclose(head, embeddings)
    # the loss: beta * CE + alpha * the LM loss of the untied head, as transformers computes it
    trainer, classifier, _, batch = loss_trainer(untied_backbone, tmp_path / "t", alpha=0.5, beta=2.0)
    classifier.eval()
    with torch.no_grad():
        full = original(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["lm_labels"])
        cls = torch.nn.functional.cross_entropy(
            classifier(**{k: batch[k] for k in ("input_ids", "attention_mask", "pool_index")}).logits, batch["labels"]
        )
        loss = trainer.compute_loss(classifier, batch)
    torch.testing.assert_close(loss, 2.0 * cls + 0.5 * full.loss, atol=1e-4, rtol=1e-4)
    # end to end, full fine-tuning: the backbone moves, the untied head does not, and it is the head kept
    rationales = write_jsonl(tmp_path / "cb.jsonl", [{"idx": i, "rationale": "Ann said so."} for i in range(12)])
    common = tiny_run(untied_backbone, superglue_dir, method="dhrd", rationales=str(rationales), lora=False)
    result = train(DHRDTrainingArguments(output_dir=str(tmp_path / "run"), keep_reasoning_head=True, **common))
    kept = load_file(str(result.model_dir / "reasoning_head.safetensors"))["lm_head.weight"]
    torch.testing.assert_close(kept, head)
    from dhrd.modeling import load_classifier

    trained, _ = load_classifier(result.model_dir)
    assert not torch.allclose(trained.get_input_embeddings().weight, embeddings)  # it did train
