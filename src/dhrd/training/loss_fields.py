"""``DHRDTrainingArguments``' loss fields: beta * L_cls + alpha * L_reason, the method, alpha (or its search),
class weights, the rationales and the reasoning head's loss."""

from __future__ import annotations

from dataclasses import dataclass

from .option_fields import DATA, LOSS, option


@dataclass
class LossFields:
    """Loss fields of ``DHRDTrainingArguments``, which inherits them (its bases name the groups in reverse
    order, so that ``dataclasses.fields`` and ``dhrd train --help`` list data, model, loss)."""

    # ---- loss: beta * L_cls + alpha * L_reason; "pooled" is alpha = 0 with no rationale (the paper's baseline)
    method: str = option(
        "pooled",
        "pooled (the paper's baseline: alpha = 0, no rationale) or dhrd (the reasoning head learns the "
        "teacher's rationales)",
        LOSS,
        choices=["pooled", "dhrd"],
    )
    alpha: float | None = option(
        None,
        "weight of the reasoning (LM) loss (None: 1 for dhrd, 0 for pooled); auto: chosen on a dev split carved "
        "from the training data (--alpha-search)",
        LOSS,
    )
    alpha_search: bool = option(
        False,
        "choose alpha and --lm-scope on a seeded, stratified dev split carved from the training rows (the "
        "validation split is never seen by the choice) among --alpha-candidates x --lm-scope-candidates, alpha 0 "
        "being pooled, through Trainer.hyperparameter_search with bad trials pruned; the winner is trained again "
        "on all the training rows and saved with the search table",
        LOSS,
        run=False,
    )
    alpha_search_backend: str = option(
        "optuna",
        "where the alpha search's trials run: optuna (one machine, one trial after another) or ray (side by side, "
        "one CPU each, on a local ray or the cluster RAY_ADDRESS names; pip install 'dhrd[ray]')",
        LOSS,
        run=False,
        choices=["optuna", "ray"],
    )
    alpha_search_storage: str | None = option(
        None,
        "where optuna keeps the alpha search's trials: an optuna storage URL (postgresql://...), or a journal file "
        "(any other path: append-only text, one operation a line), which outlives --output-dir: a search started "
        "again anywhere runs only the candidates that had not ended (default: <output-dir>/alpha-search/optuna.db)",
        LOSS,
        run=False,
    )
    alpha_candidates: str = option("0,0.1,0.25,0.5,1", "the alpha search's alphas (0: pooled)", LOSS, run=False)
    lm_scope_candidates: str = option("all,reasoning", "the alpha search's --lm-scope values", LOSS, run=False)
    dev_fraction: float | None = option(
        None,
        "validate on a seeded, stratified fraction of the training rows instead of the validation split (the "
        "alpha search's dev split; default there: 0.2)",
        DATA,
    )
    beta: float = option(1.0, "weight of the classification loss", LOSS)
    # sklearn's compute_class_weight on the training labels, or per label name {"positive": 3} (others 1)
    class_weights: dict[str, float] | str | None = option(
        None,
        "weights of the classification loss's classes: balanced (n_rows / (n_labels x rows of the label)) "
        "or label=weight pairs, e.g. positive=3 (others 1)",
        LOSS,
    )
    rationales: str | None = option(
        None, "rationale file, or a folder of <Task>/train.jsonl (None: the shared set for SuperGLUE tasks)", LOSS
    )
    rationale_mode: str = option(
        "consistent",
        "the paper's Table 2 ablations",
        LOSS,
        choices=["consistent", "only_label", "shuffle_reasoning", "shuffle_both"],
    )
    lm_scope: str = option(
        "all",
        "what the LM loss covers: all (input + rationale + answer, the paper's) or reasoning",
        LOSS,
        choices=["all", "reasoning"],
    )
    max_rationale_tokens: int = option(160, "longest rationale kept, in tokens", LOSS)
    lm_normalization: str = option(
        "token",
        "how the LM loss is averaged: token (over every target token of the step, the paper's: long inputs weigh "
        "more) or example (each example's mean over its own tokens, then the mean over examples)",
        LOSS,
        choices=["token", "example"],
    )
    log_grad_norms: bool = option(
        False,
        "log each loss term's gradient norm on the trained parameters and their cosine at every logging step "
        "(two more backward passes a logging step); the terms themselves are always logged",
        LOSS,
        run=False,
    )
