"""The model a run trains: the classifier built on the backbone, LoRA (the paper's or a given peft config), the
training attention kernel, and the reasoning head (the backbone's own LM head, reused)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..data.inputs import DataSpec
from ..modeling import backbone_source, build_classifier
from .dropout import use_bits_dropout
from .training_args import DHRDTrainingArguments


def set_training_attention(classifier, attention: str) -> None:
    if attention == "auto":
        attention = "sdpa" if torch.cuda.is_available() else "eager"
    classifier.model.set_attn_implementation(attention)


def lora_target_pattern(backbone: nn.Module) -> str:
    """A regex over every linear projection inside the backbone (attention and MLP), never the head."""
    names = sorted({n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, nn.Linear | Conv1D)})
    return rf"model\..*\.({'|'.join(names)})"


def apply_lora(classifier, args: DHRDTrainingArguments, peft_config=None):
    """The paper's LoRA on every projection, or ``peft_config`` (a peft config) where one is given. The head
    always trains in full: a config that names no ``modules_to_save`` gets the head added, and one without
    ``target_modules`` gets every projection (peft cannot infer them for DHRD's model type)."""
    from peft import LoraConfig, get_peft_model

    if peft_config is None:
        peft_config = LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            bias="none",
            target_modules=lora_target_pattern(classifier.model),
            modules_to_save=["score"],  # the head trains fully and is saved with the adapter
        )
    else:
        peft_config = copy.deepcopy(peft_config)  # the caller's config is left as given
        peft_config.modules_to_save = list(peft_config.modules_to_save or []) + ["score"]
        if not getattr(peft_config, "target_modules", True):
            peft_config.target_modules = lora_target_pattern(classifier.model)
    model = get_peft_model(classifier, peft_config)
    if args.bits_dropout:
        use_bits_dropout(model)  # LoRA's input dropout was a quarter of a CPU training step
    return model


def build_model(args: DHRDTrainingArguments, backbone: str, label_names, tokenizer, given_lm=None, peft_config=None):
    """The classifier to train (LoRA-wrapped where asked), the classifier itself, the causal LM whose head is
    the reasoning head, and the tokenizer (with a pad token)."""
    classifier, tokenizer, causal_lm = build_classifier(
        backbone,
        label_names,
        args.head,
        args.pooling,
        args.head_dropout,
        seed=args.seed,
        trust_remote_code=args.trust_remote_code,
        causal_lm=given_lm,
        tokenizer=tokenizer,
    )
    if args.gradient_checkpointing:
        classifier.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    set_training_attention(classifier, args.attention)
    lora = args.lora or peft_config is not None
    model = apply_lora(classifier, args, peft_config) if lora else classifier
    return model, classifier, causal_lm, tokenizer


def model_builder(args: DHRDTrainingArguments, spec: DataSpec, backbone: str, label_names, tokenizer, given_lm, peft):
    """() -> a freshly initialised (model, classifier, causal LM); an alpha search builds one per trial."""

    def model_parts(run_args: DHRDTrainingArguments = args):
        model, classifier, causal_lm, _ = build_model(run_args, backbone, label_names, tokenizer, given_lm, peft)
        classifier.config.dhrd = _spec_dict(run_args, spec)
        return model, classifier, causal_lm

    return model_parts


def reasoning_head(classifier, causal_lm):
    """The backbone's own LM head, reused. Tied to the embeddings (SmolLM2, Qwen2.5-0.5B) it is read from
    the classifier's embedding matrix, so it trains with it; untied it stays frozen (as under the paper's
    LoRA) and is held outside the saved classifier, so no reasoning-head weight is ever saved."""
    head = causal_lm.get_output_embeddings()
    embeddings = classifier.get_input_embeddings()
    if head.weight is embeddings.weight or head.weight.data_ptr() == embeddings.weight.data_ptr():
        return lambda: embeddings.weight
    frozen = head.weight.detach()
    return lambda: frozen.to(embeddings.weight.device)


def _spec_dict(args: DHRDTrainingArguments, spec: DataSpec) -> dict:
    return {
        "data": spec.to_dict(),
        "max_length": args.max_length,
        "truncation": args.truncation,
        "method": args.method,
        "alpha": args.lm_weight,
        "rationale_mode": args.rationale_mode if args.method == "dhrd" else None,
        "beta": args.beta,
        "backbone": backbone_source(args.backbone, args.gguf_file),  # saved as its hub id or name, never a path
    }
