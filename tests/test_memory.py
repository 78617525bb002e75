"""Resident memory: runs one after another in one process do not pile up, metrics.json records memory, and the
activation budget recomputes only the layers a batch needs (with the gradients of a plain step)."""

from __future__ import annotations

import gc

import pytest
import torch
from conftest import tiny_run

from dhrd import DHRDTrainingArguments, train
from dhrd.memory import ActivationBudget, cap_onednn_cache, layer_activation_bytes, release_memory, rss_gb

pytestmark = pytest.mark.skipif(rss_gb() is None, reason="resident memory is read from /proc (Linux)")


@pytest.fixture(scope="module")
def small_backbone(tmp_path_factory, tiny_backbone):
    """The tiny tokenizer on a 4-layer Llama of hidden 256 (4.3 M parameters, 17 MB): big enough that a run
    left alive shows in resident memory (its weights, gradients and Adam moments: 69 MB), small enough for
    seconds of training."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("small-llama")
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    tokenizer.save_pretrained(root)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(root)
    return root


def _alive(kind: type) -> int:
    gc.collect()
    return sum(type(o) is kind for o in gc.get_objects())


def _cell(tmp_path, backbone, data_dir, seed: int) -> dict:
    args = DHRDTrainingArguments(
        **tiny_run(backbone, data_dir, seed=seed, lora=False, learning_rate=1e-3),
        output_dir=str(tmp_path / f"cell-{seed}"),
        best_epoch=False,
    )
    return train(args).metrics


def test_three_training_cells_in_one_process_do_not_pile_up(tmp_path, small_backbone, superglue_dir):
    """A cell's model, optimiser state and trainer are freed when its run returns, so resident memory after
    the third cell stays within 25 MB of after the first. A cell left alive holds at least its weights,
    gradients and AdamW moments (4 x 17 MB = 69 MB, full fine-tuning); what else moves between cells (Python's
    and the tokenizer's caches, logging records, the allocator's free lists after ``malloc_trim``) measured
    under 10 MB here. The first cell is the baseline: it loads the libraries and warms their caches once."""
    from dhrd.hf.modeling_dhrd import DHRDForSequenceClassification
    from dhrd.training.trainer import DHRDTrainer

    models_before = _alive(DHRDForSequenceClassification)
    after = []
    for seed in (1, 2, 3):
        metrics = _cell(tmp_path, small_backbone, superglue_dir, seed)
        assert _alive(DHRDTrainer) == 0, f"cell {seed}: a trainer is still alive after train() returned"
        assert _alive(DHRDForSequenceClassification) == models_before, f"cell {seed}: its model is still alive"
        release_memory()
        after.append(rss_gb())
        memory = metrics["memory"]
        assert memory["peak_rss"] >= memory["rss_after_first_step"] > 0
        assert memory["rss_after_load"] > 0 and len(memory["rss_at_epoch_end"]) == 1
    growth_mb = (after[2] - after[0]) * 1024
    assert growth_mb < 25, f"resident memory grew {growth_mb:.0f} MB from the first cell to the third: {after}"


def test_onednn_primitive_cache_is_capped_unless_the_user_set_it(monkeypatch):
    """oneDNN's default cache (1,024 primitives, one set per padded shape) outlived a training cell by ~0.3 GB;
    dhrd train and the CLI cap it before the first matmul, and leave a capacity the user gave."""
    import os

    for name in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"):
        monkeypatch.setenv(name, "")  # unset, and restored after the test
    assert cap_onednn_cache() and os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "128"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "1024")
    assert not cap_onednn_cache() and os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "1024"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "")
    monkeypatch.setenv("DNNL_PRIMITIVE_CACHE_CAPACITY", "16")  # oneDNN's older name
    assert not cap_onednn_cache()


def test_activation_budget_recomputes_only_what_a_batch_needs(small_backbone):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(small_backbone, attn_implementation="eager")
    config = model.config
    per_layer = layer_activation_bytes(config, 8, 64, eager_attention=True)
    # room for two of the four layers: two are recomputed; a short batch fits and recomputes none
    budget = ActivationBudget(model, gb=2.5 * per_layer / 2**30)
    assert budget.apply(8, 64) == 2
    assert [layer.gradient_checkpointing for layer in budget.layers] == [True, True, False, False]
    assert budget.apply(2, 16) == 0 and not any(layer.gradient_checkpointing for layer in budget.layers)
    assert budget.most == 2


def test_recomputed_layers_give_the_gradients_of_a_plain_step(small_backbone):
    """Dropout included: the recomputation replays the masks of the forward pass."""
    from transformers import AutoModelForCausalLM

    from dhrd.training.dropout import BitsDropout

    model = AutoModelForCausalLM.from_pretrained(small_backbone, attn_implementation="eager")
    for layer in model.model.layers:
        layer.mlp.down_proj = torch.nn.Sequential(BitsDropout(0.1), layer.mlp.down_proj)
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (4, 48))

    def gradients(recompute: int) -> list[torch.Tensor]:
        budget = ActivationBudget(model, gb=1.0)
        budget.layers_to_recompute = lambda rows, length: recompute
        budget.apply(*ids.shape)
        model.zero_grad()
        torch.manual_seed(0)
        model(input_ids=ids, labels=ids).loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    plain, recomputed = gradients(0), gradients(4)
    for a, b in zip(plain, recomputed, strict=True):
        torch.testing.assert_close(a, b)
