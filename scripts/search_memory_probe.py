"""Probe: resident memory of an alpha search by phase, beside a plain run of the same rows (issue 24's queues).

    python scripts/search_memory_probe.py auto-linear 60 runs/probe-auto     # the search: alpha 0 and 1, then final
    python scripts/search_memory_probe.py dhrd-linear 60 runs/probe-plain    # a plain run of the same 60 CB rows

A variant and its settings as `scripts/variants_study.py` trains them on CB (seed 1, lr 1e-3, one epoch); an auto
variant searches `--alpha-candidates 0,1 --lm-scope-candidates all`. Prints (and writes to OUT/phases.log) the
resident memory and the peak since the last line, in GB, as each trial starts, its model is built, and around each
dev pass: the peak printed before a dev pass is that of the training steps before it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import variants_study  # noqa: E402 (this script's folder)

from dhrd.memory import peak_rss_gb, reset_peak, rss_gb  # noqa: E402
from dhrd.training import tuning  # noqa: E402
from dhrd.training.trainer import DHRDTrainer  # noqa: E402


def main() -> None:
    variant, rows, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    log, began = (out / "phases.log").open("w"), time.monotonic()

    def mark(what: str) -> None:
        line = f"{time.monotonic() - began:6.0f} s  {what:<18} rss {rss_gb():.2f}  peak {peak_rss_gb():.2f}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()
        reset_peak()

    evaluate, trial_model = DHRDTrainer.evaluate, tuning.AlphaSearchTrainer.trial_model

    def marked_evaluate(self, *args, **kwargs):
        mark("before dev pass")
        result = evaluate(self, *args, **kwargs)
        mark("after dev pass")
        return result

    def marked_trial_model(self, trial=None):
        mark("trial starts")
        model = trial_model(self, trial)
        mark("trial model built")
        return model

    DHRDTrainer.evaluate, tuning.AlphaSearchTrainer.trial_model = marked_evaluate, marked_trial_model
    study = variants_study.SuperGLUE("cb", "native")
    cell = variants_study.Cell(rows, variant, 1, 1.0, 1e-3)
    args = variants_study.training_arguments(study, cell, out, None, False)
    if args.alpha_search:
        args = dataclasses.replace(args, alpha_candidates="0,1", lm_scope_candidates="all")
    from dhrd.training.run import train

    mark("start")
    train(args)
    mark("end")


if __name__ == "__main__":
    main()
