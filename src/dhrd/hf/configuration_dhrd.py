"""Configuration of a DHRD classifier: a decoder-only backbone plus a pooled classification head.

This file is copied beside saved weights and must import nothing but transformers.
"""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


@strict
class DHRDConfig(PreTrainedConfig):
    """``text_config`` is the backbone's own config; the other fields describe the head.

    pooling: ``last`` (hidden state of the last real input token, the paper's) or ``mean`` (mean over the
    real input tokens). head: ``mlp`` (the paper's 2-layer MLP) or ``linear``.
    """

    model_type = "dhrd"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}
    # Trainer collects every output key at evaluation; these are never wanted there.
    keys_to_ignore_at_inference = ["past_key_values", "hidden_states", "attentions", "last_hidden_state"]

    text_config: dict | PreTrainedConfig | None = None
    pooling: str = "last"
    head: str = "mlp"
    head_hidden_size: int | None = None
    head_dropout: float = 0.1
    head_activation: str = "gelu"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', not {self.pooling!r}")
        if self.head not in ("mlp", "linear"):
            raise ValueError(f"head must be 'mlp' or 'linear', not {self.head!r}")
        if self.head_hidden_size is None and self.text_config is not None:
            self.head_hidden_size = self.text_config.hidden_size


__all__ = ["DHRDConfig"]
