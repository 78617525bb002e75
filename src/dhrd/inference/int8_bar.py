"""The bar an int8 file must meet for ``dhrd export --quantize int8`` to keep it (issue 28: "int8 that keeps the
answers, or no int8"): torch fp32's label on at least ``INT8_MIN_AGREEMENT`` of the check rows, and accuracy moved by
at most ``INT8_MAX_ACCURACY_CHANGE`` points on those with gold labels. Light (the standard library only): the
command's options take their defaults from here."""

from __future__ import annotations

INT8_MIN_AGREEMENT = 0.99
INT8_MAX_ACCURACY_CHANGE = 0.5  # points of accuracy, either way


def builtin_rows(check: dict) -> bool:
    """Whether the check ran on the three built-in texts: no real check, and no bar can be judged on it."""
    return check["rows_source"].endswith("built-in check texts")


def judge(check: dict, min_agreement: float, max_accuracy_change: float | None) -> dict:
    """``check`` (an ``Int8Check`` as a dict, as recorded) held to the bar: agreement with torch fp32 on at least
    ``min_agreement`` of the rows, and accuracy moved by at most ``max_accuracy_change`` points where the rows have
    gold labels (None: not held to one). Returns it with ``min_agreement``, ``max_accuracy_change``, ``kept`` and
    ``verdict`` set. On the built-in texts the bar is not judged and the file is kept; otherwise a file below the
    bar is not kept, and ``verdict`` says why."""
    judged = {**check, "min_agreement": min_agreement, "max_accuracy_change": max_accuracy_change, "kept": True}
    if builtin_rows(check):
        judged["verdict"] = f"bar not judged: {check['rows']} built-in texts are no real check"
        return judged
    reasons = []
    # from the count, not the rounded fraction: 198 of 200 meets 0.99
    if check["labels_agreeing"] + 1e-9 < min_agreement * check["rows"]:
        reasons.append(
            f"it gave torch fp32's label on {check['agreement']:.1%} of {check['rows']} rows of "
            f"{check['rows_source']}, under the bar of {min_agreement:.1%} (--int8_min_agreement)"
        )
    change = check.get("accuracy_change")
    if max_accuracy_change is not None and change is not None and abs(change) > max_accuracy_change + 1e-9:
        reasons.append(
            f"it moved accuracy by {change:+.1f} points ({check['fp32_accuracy']:.1f} -> "
            f"{check['int8_accuracy']:.1f} on {check['labelled_rows']} labelled rows of {check['rows_source']}), "
            f"over the bar of {max_accuracy_change:g} (--int8_max_accuracy_change)"
        )
    judged["kept"] = not reasons
    judged["verdict"] = "; ".join(reasons) if reasons else "bar met"
    return judged
