"""Plot DHRD's two loss terms and their gradient norms through training, one row per study, from the runs'
``metrics.json`` (``loss_terms``, logged with ``--log-grad-norms``): why did DHRD hurt on one task and not another?

    python scripts/plot_loss_terms.py --out results/loss-terms-smollm2-cpu \
        CB=runs/variants-cb/nall-e1-lr0.001-pooled-s1,runs/variants-cb/nall-e1-lr0.001-dhrd-s1 \
        RTE=runs/variants-rte/nall-e1-lr0.0002-pooled-s1,runs/variants-rte/nall-e1-lr0.0002-dhrd-s1

Each argument is NAME=POOLED_RUN,DHRD_RUN. Writes ``<out>.png`` and ``<out>.json`` (per study: the mean of
each series over the epoch, and the share of logging steps whose two gradients point apart).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dhrd.runtime import save_figure_atomic, write_json_atomic


def read_run(run: str) -> dict:
    folder = Path(run)
    metrics = json.loads((folder / "metrics.json").read_text())
    settings = json.loads((folder / "train_args.json").read_text())
    alpha = settings.get("alpha")
    alpha = alpha if alpha is not None else (1.0 if settings.get("method") == "dhrd" else 0.0)
    return {"terms": metrics.get("loss_terms") or [], "alpha": alpha, "beta": settings.get("beta", 1.0)}


def series(terms: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(t["step"], t[key]) for t in terms if t.get(key) is not None]
    return (np.array([p[0] for p in points]), np.array([p[1] for p in points])) if points else (np.array([]),) * 2


def ratio(alpha, lm_norm, beta, cls_norm) -> float | None:
    return round(alpha * lm_norm / (beta * cls_norm), 2) if lm_norm and cls_norm else None


def summary(pooled: dict, dhrd: dict) -> dict:
    def mean(terms, key):
        values = series(terms, key)[1]
        return round(float(values.mean()), 4) if len(values) else None

    cosines = series(dhrd["terms"], "grad_cosine")[1]
    return {
        "alpha": dhrd["alpha"],
        "pooled_loss_cls": mean(pooled["terms"], "loss_cls"),
        "dhrd_loss_cls": mean(dhrd["terms"], "loss_cls"),
        "dhrd_loss_lm": mean(dhrd["terms"], "loss_lm"),
        "grad_norm_cls": mean(dhrd["terms"], "grad_norm_cls"),
        "grad_norm_cls_shared": mean(dhrd["terms"], "grad_norm_cls_shared"),
        "grad_norm_lm": mean(dhrd["terms"], "grad_norm_lm"),
        # what each term contributes to the step: its weight times its gradient
        "weighted_lm_over_cls": ratio(
            dhrd["alpha"], mean(dhrd["terms"], "grad_norm_lm"), dhrd["beta"], mean(dhrd["terms"], "grad_norm_cls")
        ),
        "grad_cosine": mean(dhrd["terms"], "grad_cosine"),
        "steps_pointing_apart": round(float((cosines < 0).mean()), 2) if len(cosines) else None,
    }


def plot(studies: dict[str, tuple[dict, dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(studies), 3, figsize=(15, 3.6 * len(studies)), squeeze=False)
    for row, (name, (pooled, dhrd)) in zip(axes, studies.items()):
        loss, norms, cosine = row
        loss.plot(*series(pooled["terms"], "loss_cls"), label="pooled: classification loss", color="tab:gray")
        loss.plot(*series(dhrd["terms"], "loss_cls"), label="DHRD: classification loss", color="tab:blue")
        loss.plot(*series(dhrd["terms"], "loss_lm"), label="DHRD: LM loss (per token)", color="tab:orange")
        loss.set_title(f"{name}: loss terms (alpha {dhrd['alpha']:g})")
        steps, cls = series(dhrd["terms"], "grad_norm_cls")
        lm_steps, lm = series(dhrd["terms"], "grad_norm_lm")
        norms.plot(steps, dhrd["beta"] * cls, label="beta x |grad classification|", color="tab:blue")
        norms.plot(lm_steps, dhrd["alpha"] * lm, label="alpha x |grad LM|", color="tab:orange")
        shared_steps, shared = series(dhrd["terms"], "grad_norm_cls_shared")
        if len(shared):
            norms.plot(shared_steps, dhrd["beta"] * shared, "--", label="beta x |grad classification|, backbone only")
        norms.set_yscale("log")
        norms.set_title(f"{name}: gradient norms on the trained parameters")
        cosine.plot(*series(dhrd["terms"], "grad_cosine"), color="tab:green")
        cosine.axhline(0, color="black", linewidth=0.5)
        cosine.set_ylim(-1, 1)
        cosine.set_title(f"{name}: cosine between the two gradients")
        for ax in row:
            ax.set_xlabel("optimiser step")
        loss.legend(fontsize=8)
        norms.legend(fontsize=8)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="NAME=POOLED_RUN,DHRD_RUN")
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    studies = {}
    for spec in options.studies:
        name, runs = spec.split("=", 1)
        pooled, dhrd = runs.split(",")
        studies[name] = (read_run(pooled), read_run(dhrd))
    out = Path(options.out)
    plot(studies, out.with_suffix(".png"))
    write_json_atomic(out.with_suffix(".json"), {name: summary(*runs) for name, runs in studies.items()})
    print(json.dumps({name: summary(*runs) for name, runs in studies.items()}, indent=1))


if __name__ == "__main__":
    main()
