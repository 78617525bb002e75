"""``dhrd train``'s command line, generated from ``DHRDTrainingArguments`` by transformers' ``HfArgumentParser``
(as TRL's ``TrlParser`` is): every field is a flag under its own name (``--num_train_epochs`` or
``--num-train-epochs``), with the aliases, help and choices its metadata declares (``--epochs``, ``--lr``,
``--batch-size``, ...), every boolean with a ``--no-<name>`` form, DHRD's groups listed before transformers'
and each default shown. ``--config x.yaml|json|toml`` gives values that the command line overrides. Building it
imports torch and transformers: ``dhrd.training.train_options`` answers ``--help`` and option errors from a table
of it instead."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import typing
from pathlib import Path
from typing import Literal

from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from ..errors import DHRDInputError
from .option_fields import DATA, LOSS, MODEL, TRAINING
from .train_options import (
    DESCRIPTION,
    PACKAGED,
    HelpFormatter,
    no_such_option,
    read_config,
    remember,
    table_key,
    table_of,
    usage_error,
    with_config,
    write_table,
)
from .training_args import DHRDTrainingArguments

GROUPS = (DATA, MODEL, LOSS, TRAINING)
TRAINER_GROUP = "transformers.TrainingArguments (every Trainer option)"
FIELDS = [f.name for f in dataclasses.fields(DHRDTrainingArguments) if f.init]  # what --config may set


def _one_or_many(kind) -> bool:
    """A field typed ``str | list[str]`` (``report_to``, ``optim_target_modules``): Trainer takes a list."""
    kinds = typing.get_args(kind)
    return str in kinds and any(typing.get_origin(k) is list and typing.get_args(k) == (str,) for k in kinds)


# several values (``--report_to tensorboard wandb``) are a list, one stays a string (its meaning may differ:
# optim_target_modules' string is a pattern)
ONE_OR_MANY = frozenset(
    name for name, kind in typing.get_type_hints(DHRDTrainingArguments).items() if name in FIELDS and _one_or_many(kind)
)


class DHRDArgumentParser(HfArgumentParser):
    """HfArgumentParser over ``DHRDTrainingArguments`` with groups, negative flags, ``--config`` and errors
    raised as ``DHRDInputError`` (the CLI prints one line and exits with 2)."""

    def __init__(self, prog: str = "dhrd train"):
        super().__init__(
            DHRDTrainingArguments,
            prog=prog,
            usage=f"{prog} [--config FILE] [options]",
            description=DESCRIPTION,
            formatter_class=HelpFormatter,
        )
        self.add_argument(
            "--config",
            metavar="FILE",
            help="a YAML, JSON or TOML file of these settings; the command line overrides them",
        )

    def _add_dataclass_arguments(self, dtype):
        # HfArgumentParser puts one dataclass in one group; DHRD's fields are split into theirs, listed first.
        groups = {name: self.add_argument_group(name) for name in (*GROUPS, TRAINER_GROUP)}
        hints = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            if not f.init:
                continue
            group = groups[f.metadata.get("group", TRAINER_GROUP)]
            f.type = hints[f.name]
            if f.type in (bool, bool | None):
                add_bool(group, f)
            else:
                metadata = {k: v for k, v in f.metadata.items() if k not in ("group", "negative", "defines_run")}
                if f.name in ONE_OR_MANY:  # HfArgumentParser would take one string only
                    f.type, metadata["default"] = list[str], f.default
                if "choices" not in metadata and (metavar := _metavar(f.type)):
                    metadata["metavar"] = metavar
                self._parse_dataclass_field(group, _with(f, metadata))

    def error(self, message: str):
        raise usage_error(message, self.prog)

    def parse_known_args(self, args=None, namespace=None):
        namespace, left = super().parse_known_args(args, namespace)
        for name in ONE_OR_MANY:
            value = getattr(namespace, name, None)
            if isinstance(value, list) and len(value) == 1:
                setattr(namespace, name, value[0])  # one value stays the string it always was
        return namespace, left

    def parse(self, argv: list[str]) -> DHRDTrainingArguments:
        """Defaults, then ``--config``'s file, then the command line."""
        argv = with_config(self, argv, set(FIELDS))
        try:
            found = self.parse_args_into_dataclasses(argv, return_remaining_strings=True, look_for_args_file=False)
        except ValueError as error:  # TrainingArguments' own checks
            raise DHRDInputError(" ".join(str(error).split())) from None
        if found[-1]:
            raise no_such_option(found[-1], self.prog)
        return found[0]  # then a namespace holding --config, then the strings left over

    def read_config(self, path: Path) -> dict:
        """A YAML, JSON or TOML mapping of field names (dashes or underscores); unknown names are errors."""
        return read_config(path, set(FIELDS), self.prog)


def _with(f: dataclasses.Field, metadata: dict) -> dataclasses.Field:
    """``f`` with ``metadata`` (HfArgumentParser passes a field's metadata to argparse as keywords)."""
    copy = dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=metadata)
    copy.name, copy.type = f.name, f.type
    return copy


def _metavar(kind) -> str | None:
    """A short placeholder (argparse's default repeats the upper-cased name); None where argparse shows the
    choices (enums, literals)."""
    kinds = set(typing.get_args(kind)) or {kind}
    if kinds & {int, float}:
        return "N"
    if any(isinstance(k, type) and issubclass(k, enum.Enum) for k in kinds) or typing.get_origin(kind) is Literal:
        return None
    return "TEXT"


def add_bool(group, f: dataclasses.Field) -> None:
    """``--name`` (alone: True; or ``--name false``), ``--no-name``, and the field's own negative flags
    (``--full``, ``--restart``, ...)."""
    names = [f"--{f.name}", f"--{f.name.replace('_', '-')}"] if "_" in f.name else [f"--{f.name}"]
    group.add_argument(
        *names,
        *f.metadata.get("aliases", []),
        dest=f.name,
        type=string_to_bool,
        nargs="?",
        const=True,
        default=f.default,
        metavar="BOOL",
        help=f.metadata.get("help", ""),
    )
    negative = list(dict.fromkeys([f"--no_{f.name}", f"--no-{f.name.replace('_', '-')}"]))
    for flag in f.metadata.get("negative", []):
        opposite = f"the same as --no-{f.name.replace('_', '-')}"
        group.add_argument(flag, dest=f.name, action="store_false", default=argparse.SUPPRESS, help=opposite)
    group.add_argument(*negative, dest=f.name, action="store_false", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def parse_train_arguments(argv: list[str]) -> DHRDTrainingArguments:
    """``dhrd train``'s arguments as a ``DHRDTrainingArguments``; ``--help`` prints the help and exits."""
    parser = DHRDArgumentParser()
    remember(parser, FIELDS)  # before parsing: --help exits
    return parser.parse(argv)


def write_packaged() -> Path:
    """Regenerates ``train_options.json`` from the real parser (after a change to ``dhrd train``'s options:
    ``python -m dhrd.training.train_options``). Here, beside the parser: the table module sits below it."""
    table = table_of(DHRDArgumentParser(), FIELDS)
    if table is None:
        raise SystemExit("dhrd train's parser holds an action a table cannot carry: no table written")
    return write_table(PACKAGED, {"key": table_key(), **table})


__all__ = ["DHRDArgumentParser", "parse_train_arguments", "write_packaged"]
