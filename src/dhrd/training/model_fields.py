"""``DHRDTrainingArguments``' model fields: the backbone, the classification head and its pooling, LoRA,
attention, the activation budget and what the saved model keeps."""

from __future__ import annotations

from dataclasses import dataclass

from .option_fields import MODEL, option


@dataclass
class ModelFields:
    """Model fields of ``DHRDTrainingArguments``, which inherits them (its bases name the groups in reverse
    order, so that ``dataclasses.fields`` and ``dhrd train --help`` list data, model, loss)."""

    backbone: str | None = option(
        None,
        "hub name, local directory or .gguf file (None: the shared SmolLM2-135M-Instruct GGUF, else "
        "HuggingFaceTB/SmolLM2-135M-Instruct)",
        MODEL,
    )
    gguf_file: str | None = option(None, "GGUF file name inside --backbone's directory", MODEL)
    # linear by default (issue 28): as good as the paper's MLP within the paired CIs on CB, RTE and ComVE, measurably
    # better for DHRD on ComVE, and the saved model is then a plain *ForSequenceClassification (no custom code)
    head: str = option(
        "linear",
        "linear (one bias-free layer, saved as the backbone's own *ForSequenceClassification) or mlp (the "
        "paper's 2-layer MLP; saved with its modeling code)",
        MODEL,
        choices=["linear", "mlp"],
    )
    pooling: str = option("last", "last real input token (the paper's) or mean", MODEL, choices=["last", "mean"])
    head_dropout: float = option(0.1, "dropout inside the classification head", MODEL)
    lora: bool = option(True, "LoRA (the paper's r=16, alpha=32); --full: full fine-tuning", MODEL, negative=["--full"])
    lora_r: int = option(16, "LoRA rank", MODEL)
    lora_alpha: int = option(32, "LoRA alpha", MODEL)
    lora_dropout: float = option(0.1, "LoRA dropout", MODEL)
    # "auto": eager attention on a CPU (its matmuls beat SDPA's CPU flash kernel by 10% of a training step),
    # SDPA on a GPU. The saved model keeps the backbone's own setting.
    attention: str = option(
        "auto",
        "attention kernel while training: auto (eager on a CPU, SDPA on a GPU), eager or sdpa",
        MODEL,
        choices=["auto", "eager", "sdpa"],
        run=False,
    )
    # The activations a LoRA step keeps for its backward pass are about 70 KB a token a layer on SmolLM2 (8 x 512
    # tokens: 10 GB); layers beyond the budget are recomputed in the backward pass (dhrd.memory).
    activation_memory: float = option(
        1.0,
        "GB of activations a training step may keep for its backward pass; the layers beyond are recomputed "
        "(activation checkpointing, only for batches that need it). 0: no limit",
        MODEL,
        run=False,
    )
    bits_dropout: bool = option(
        True, "LoRA's input dropout with 3x cheaper masks on a CPU (dhrd.training.dropout)", MODEL, run=False
    )
    chunked_lm_loss: bool = option(
        True,
        "the reasoning head's loss a chunk of targets at a time, never holding all their logits "
        "(dhrd.training.lm_loss); "
        "off: one projection of every target, as autograd does it",
        MODEL,
        run=False,
    )
    trust_remote_code: bool = option(
        False,
        "run Python code shipped with the backbone (its auto_map); off: never",
        MODEL,
        run=False,
    )
    keep_reasoning_head: bool = option(
        False,
        "also save the LM head beside the classifier, so that `dhrd explain` can use it",
        MODEL,
        run=False,
    )
