"""How ``DHRDTrainingArguments`` declares a field once for every place that shows it: ``option`` puts the help,
choices, command-line aliases, negative flags, help group and whether the field defines a run into the field's
metadata, which ``dhrd train``'s parser (``argparser``), its option table (``train_options``) and the resume
checks (``training_args.run_defining``) read back."""

from __future__ import annotations

from dataclasses import field

DATA, MODEL, LOSS, TRAINING = "data", "model", "loss", "training (the paper's defaults)"


def option(default, help: str, group: str, *, run=True, choices=None, aliases=(), negative=(), factory=None):
    """A dataclass field whose metadata is what the command line shows: help, choices, aliases, the group
    (DHRD's groups are listed before transformers'), and ``negative`` flags that set a bool to False; and
    whether it defines the run (``run``): a run resumed, or found finished, under a different value of a
    run-defining setting would mix two runs, so it is refused (``run_defining``). ``run=False``: logging,
    output, resources and when to validate, which change nothing a checkpoint means."""
    metadata = {"help": help, "group": group, "defines_run": run}
    if choices:
        metadata["choices"] = list(choices)
    if aliases:
        metadata["aliases"] = list(aliases)
    if negative:
        metadata["negative"] = list(negative)
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)
