"""The paper's reference numbers: Table 1 (pooled vs DHRD per backbone and task) and Table 5's speed-up."""

from __future__ import annotations

import statistics

# Table 1 of the paper (validation split): per backbone, the pooled baseline and DHRD, each task's metrics.
PAPER_TABLE1: dict[str, dict[str, dict[str, tuple[float, ...]]]] = {
    "Llama-3.1-8B": {
        "pooled": {
            "boolq": (90.7,),
            "cb": (81.9, 90.0),
            "copa": (93.8,),
            "multirc": (88.9, 62.9),
            "rte": (91.4,),
            "wic": (74.8,),
            "wsc": (91.5,),
        },
        "dhrd": {
            "boolq": (91.1,),
            "cb": (89.0, 94.8),
            "copa": (95.4,),
            "multirc": (89.0, 63.7),
            "rte": (92.2,),
            "wic": (74.6,),
            "wsc": (91.1,),
        },
    },
    "Qwen-3-8B": {
        "pooled": {
            "boolq": (89.4,),
            "cb": (83.5, 93.2),
            "copa": (93.8,),
            "multirc": (88.2, 62.0),
            "rte": (91.9,),
            "wic": (75.1,),
            "wsc": (89.0,),
        },
        "dhrd": {
            "boolq": (90.5,),
            "cb": (90.8, 95.6),
            "copa": (93.2,),
            "multirc": (88.5, 62.5),
            "rte": (91.9,),
            "wic": (76.6,),
            "wsc": (89.7,),
        },
    },
    "Llama-3.2-3B": {
        "pooled": {
            "boolq": (89.0,),
            "cb": (78.6, 88.8),
            "copa": (72.2,),
            "multirc": (83.5, 49.8),
            "rte": (84.3,),
            "wic": (68.1,),
            "wsc": (77.4,),
        },
        "dhrd": {
            "boolq": (89.2,),
            "cb": (73.8, 87.2),
            "copa": (89.2,),
            "multirc": (85.9, 55.3),
            "rte": (87.7,),
            "wic": (73.0,),
            "wsc": (80.8,),
        },
    },
    "Qwen-3-4B": {  # its DHRD row is alpha = 0.5
        "pooled": {
            "boolq": (88.9,),
            "cb": (84.3, 91.6),
            "copa": (92.4,),
            "multirc": (87.7, 62.0),
            "rte": (90.4,),
            "wic": (71.4,),
            "wsc": (85.6,),
        },
        "dhrd": {
            "boolq": (89.5,),
            "cb": (84.4, 92.0),
            "copa": (92.8,),
            "multirc": (88.1, 62.4),
            "rte": (90.8,),
            "wic": (71.4,),
            "wsc": (87.4,),
        },
    },
}
PAPER_QPS_SPEEDUP = "96-142x (Table 5: pooled vs CoT decoding on the same backbone, 8x H100)"


def paper_gains() -> dict[str, dict[str, float]]:
    """Relative gain of DHRD over pooled in percent, per paper backbone and task (task score = the mean of
    its metrics, as in the paper's average), and for the average over the seven tasks."""
    gains: dict[str, dict[str, float]] = {}
    for backbone, rows in PAPER_TABLE1.items():
        pooled = {t: statistics.fmean(v) for t, v in rows["pooled"].items()}
        dhrd = {t: statistics.fmean(v) for t, v in rows["dhrd"].items()}
        gains[backbone] = {t: round(100 * (dhrd[t] / pooled[t] - 1), 2) for t in pooled}
        # from the averages as the paper prints them (two decimals), as its Rel.Δ column is
        avg_pooled, avg_dhrd = round(statistics.fmean(pooled.values()), 2), round(statistics.fmean(dhrd.values()), 2)
        gains[backbone]["average"] = round(100 * (avg_dhrd / avg_pooled - 1), 2)
    return gains
