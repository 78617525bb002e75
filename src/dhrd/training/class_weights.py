"""The classification loss's class weights (``--class-weights``): sklearn's balanced ones or named per label."""

from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from ..data.tasks import chooses_candidate
from ..errors import DHRDInputError


def class_weight_values(setting, train_rows: list, label_names, input_format: str) -> list[float] | None:
    """One cross-entropy weight per label: ``"balanced"`` is sklearn's ``compute_class_weight`` on the training
    labels (n_rows / (n_labels * rows of the label)); a mapping or ``"name=weight,..."`` names some labels
    (the others weigh 1)."""
    if setting is None:
        return None
    # yes/no rows that are candidates of one example: their Yes/No balance is the encoding's, not the task's classes
    tasks = {e.task for e in train_rows}
    candidates = sorted(t for t in tasks if chooses_candidate(t)) if input_format == "yesno" else []
    if candidates:
        raise DHRDInputError(
            f"--class-weights: {', '.join(candidates)} in the yesno format is one Yes/No row per candidate, whose "
            "balance is the format's, not the task's classes: use --input-format native to weight its classes"
        )
    labels = np.array([e.label for e in train_rows])
    if setting == "balanced":
        absent = [name for k, name in enumerate(label_names) if not (labels == k).any()]
        if absent:
            raise DHRDInputError(f"--class-weights balanced: no training row has the label {', '.join(absent)}")
        weights = compute_class_weight("balanced", classes=np.arange(len(label_names)), y=labels)
        return [round(float(w), 6) for w in weights]
    return _named_weights(setting, label_names)


def _named_weights(setting, label_names) -> list[float]:
    if isinstance(setting, str):
        try:
            setting = {k.strip(): float(v) for k, v in (part.split("=", 1) for part in setting.split(",") if part)}
        except ValueError:
            raise DHRDInputError(
                f"--class-weights {setting!r}: expected 'balanced' or label=weight pairs like "
                f"{label_names[-1]}=2.0,{label_names[0]}=1.0"
            ) from None
    unknown = [name for name in setting if name not in label_names]
    if unknown:
        raise DHRDInputError(
            f"--class-weights: {', '.join(unknown)} is not a label (the labels: {', '.join(label_names)})"
        )
    weights = [float(setting.get(name, 1.0)) for name in label_names]
    if min(weights) < 0 or not sum(weights):
        raise DHRDInputError("--class-weights: weights must be >= 0 and not all 0")
    return weights
