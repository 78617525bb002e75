"""The fields of DHRDTrainingArguments declare what they are: whether they define a run (resuming under another
value is refused) and which values they allow. Nothing is kept as a second list beside them."""

import dataclasses

import pytest
from transformers import TrainingArguments

from dhrd.errors import DHRDInputError
from dhrd.training.resume import RUN_DEFINING, changed_settings
from dhrd.training.training_args import (
    TRAINER_NOT_RUN_DEFINING,
    TRAINER_RUN_DEFINING,
    DHRDTrainingArguments,
    run_defining,
)


def test_every_field_is_declared_run_defining_or_not():
    """DHRD's fields carry the flag in their metadata; transformers' own fields, which DHRD does not redeclare,
    are in exactly one of two sets. A field added by a newer transformers fails here until it is classified."""
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    unclassified, twice = [], []
    for f in dataclasses.fields(DHRDTrainingArguments):
        flagged = "defines_run" in f.metadata
        listed = (f.name in TRAINER_RUN_DEFINING) + (f.name in TRAINER_NOT_RUN_DEFINING)
        if flagged + listed == 0:
            unclassified.append(f.name)
        if flagged + listed > 1:
            twice.append(f.name)
        if listed:
            assert f.name in inherited, f"{f.name} is DHRD's own: declare it on the field"
    assert unclassified == [], f"classify these fields: {unclassified}"
    assert twice == [], f"classified twice: {twice}"
    names = {f.name for f in dataclasses.fields(DHRDTrainingArguments)}
    stale = (TRAINER_RUN_DEFINING | TRAINER_NOT_RUN_DEFINING) - names
    assert stale == set(), f"no such field: {stale}"
    assert RUN_DEFINING == run_defining()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("head_dropout", 0.3),
        ("lora_dropout", 0.0),
        ("weight_decay", 0.1),
        ("warmup_steps", 0),
        ("lr_scheduler_type", "linear"),
    ],
)
def test_training_settings_define_the_run(tmp_path, name, value):
    """Resuming a run with another dropout, weight decay or warm-up would mix two runs: refused."""
    assert name in RUN_DEFINING
    saved = DHRDTrainingArguments(output_dir=str(tmp_path), task="rte").to_dict()
    changed = DHRDTrainingArguments(output_dir=str(tmp_path), task="rte", **{name: value})
    assert changed_settings(saved, changed) == [name]


@pytest.mark.parametrize("name", ["output_dir", "logging_steps", "per_device_eval_batch_size", "report_to", "resume"])
def test_logging_output_and_resources_do_not(name):
    assert name not in RUN_DEFINING


def test_a_saved_run_compares_equal_to_itself(tmp_path):
    """Enums (SchedulerType, OptimizerNames) saved as their names are the same settings."""
    args = DHRDTrainingArguments(output_dir=str(tmp_path), task="rte")
    assert changed_settings(args.to_dict(), args) == []
    assert changed_settings(dataclasses.asdict(args), args) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lm_scope", "everything"),
        ("attention", "flash"),
        ("truncation", "right"),
        ("method", "magic"),
        ("selection", "last"),
        ("lm_normalization", "batch"),
        ("head", "cnn"),
        ("rationale_mode", "random"),
    ],
)
def test_allowed_values_come_from_the_field(tmp_path, name, value):
    """validate() checks the choices the field's metadata declares (the command line offers the same)."""
    field = next(f for f in dataclasses.fields(DHRDTrainingArguments) if f.name == name)
    args = DHRDTrainingArguments(output_dir=str(tmp_path), task="rte", **{name: value})
    with pytest.raises(DHRDInputError, match=", ".join(field.metadata["choices"])):
        args.validate()
