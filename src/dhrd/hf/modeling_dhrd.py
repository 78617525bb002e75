"""A pooled sequence classifier over any decoder-only transformers backbone.

The backbone keeps its causal attention, so the hidden state of an input token does not depend on what
follows it. That is what lets DHRD train on ``[input, rationale, answer]`` sequences and still pool the
very state that an input-only pass gives at inference.

This file is copied beside saved weights and must import nothing but torch and transformers.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutputWithPast

from .configuration_dhrd import DHRDConfig


@dataclass
class DHRDClassifierOutput(SequenceClassifierOutputWithPast):
    """Adds the backbone's last hidden state, returned on request for a second (train-time) head."""

    last_hidden_state: torch.FloatTensor | None = None


class MLPHead(nn.Module):
    """The paper's 2-layer MLP head: dense -> activation -> dropout -> out_proj."""

    def __init__(self, hidden_size: int, head_hidden_size: int, num_labels: int, dropout: float, activation: str):
        super().__init__()
        self.dense = nn.Linear(hidden_size, head_hidden_size)
        self.act = ACT2FN[activation]
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(head_hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(self.act(self.dense(pooled))))


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the rightmost real token in each row, whichever side was padded.

    Taken from the attention mask, never from ``pad_token_id``: many models pad with their EOS token.
    """
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.to(positions.dtype)).argmax(-1)


def pool_hidden_states(
    hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, pool_index: torch.Tensor | None = None
) -> torch.Tensor:
    """Pool the states of the input tokens. ``pool_index`` marks the last input token of each row when the
    sequence continues past the input (a DHRD training sequence); by default it is the last real token."""
    if pool_index is None:
        pool_index = last_token_index(attention_mask)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if pooling == "last":
        return hidden[rows, pool_index]
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    in_input = attention_mask.bool() & (positions[None, :] <= pool_index[:, None])
    weights = in_input.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class DHRDForSequenceClassification(PreTrainedModel):
    config_class = DHRDConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _no_split_modules = []

    def __init__(self, config: DHRDConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = AutoModel.from_config(config.text_config)
        hidden = config.text_config.hidden_size
        if config.head == "linear":
            # Same name and shape as transformers' *ForSequenceClassification, so it exports 1:1.
            self.score = nn.Linear(hidden, config.num_labels, bias=False)
        else:
            self.score = MLPHead(
                hidden, config.head_hidden_size, config.num_labels, config.head_dropout, config.head_activation
            )
        self.post_init()

    def _init_weights(self, module):
        std = getattr(self.config.text_config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear) and any(module is m for m in self.score.modules()):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif hasattr(self.model, "_init_weights") and not any(module is m for m in self.score.modules()):
            self.model._init_weights(module)

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def classify(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, pool_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        pooled = pool_hidden_states(hidden, attention_mask, self.config.pooling, pool_index)
        head_dtype = next(self.score.parameters()).dtype
        return self.score(pooled.to(head_dtype))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pool_index: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_last_hidden_state: bool = False,
        **kwargs,
    ) -> DHRDClassifierOutput:
        if attention_mask is None:
            reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
        kwargs.pop("num_items_in_batch", None)
        kwargs.setdefault("use_cache", False)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            position_ids=position_ids,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        logits = self.classify(hidden, attention_mask, pool_index)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels.to(logits.device))
        return DHRDClassifierOutput(
            loss=loss,
            logits=logits,
            last_hidden_state=hidden if return_last_hidden_state else None,
        )


__all__ = ["DHRDForSequenceClassification", "MLPHead", "last_token_index", "pool_hidden_states"]
