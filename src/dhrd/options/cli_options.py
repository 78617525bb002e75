"""Commands generated from their dataclasses: each field of a command's arguments is one option, declared once.

A field's metadata (``option(...)``) gives its help, allowed values (``choices``), extra spellings (``aliases``),
a bool's flag when it has no ``--no-`` form (``flag``), ``repeat=True`` for a list given once per item,
``positional=True`` for a command-line argument (``dhrd push MODEL_DIR REPO_ID``), and ``cli=False`` for a field
the command line does not set. Every option is spelled ``--kebab-case`` and ``--snake_case``, as ``dhrd train``'s
are; its default is the field's (typer shows it); other lists and tuples are written comma-separated.
Every command also takes ``--config FILE`` (YAML, JSON or TOML: ``train_options.read_config``, the one reader), its
settings read as their options are; the command line overrides it. Positional arguments are the command line's.

Only typer and the standard library are imported here, and the argument dataclasses live in light modules:
``dhrd <command> --help`` never imports torch."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import typer

from ..errors import DHRDInputError

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import BadParameter, MissingParameter
except ImportError:  # pragma: no cover
    from click.exceptions import BadParameter, MissingParameter


def option(default=dataclasses.MISSING, help: str = "", *, choices=None, aliases=(), flag=None, cli=True, **more):
    """A dataclass field that is also a command-line option (see the module's docstring). ``factory``: a
    default factory; ``cli_type``: the type the command line reads (a ``dict | int`` cap read as text)."""
    metadata = {"help": help, "cli": cli, **more}
    if choices:
        metadata["choices"] = list(choices)
    if aliases:
        metadata["aliases"] = list(aliases)
    if flag:
        metadata["flag"] = flag
    factory = metadata.pop("factory", None)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(arguments: type) -> list[dataclasses.Field]:
    """The fields the command line sets."""
    return [f for f in dataclasses.fields(arguments) if f.init and f.metadata.get("cli", True)]


def field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...  # required


def _plain(hint):
    """``X | None`` as ``X``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [k for k in typing.get_args(hint) if k is not type(None)]
        return kinds[0] if len(kinds) == 1 else hint
    return hint


def _sequence_item(hint):
    """The item type of ``tuple[X, ...]`` or ``list[X]``, else None."""
    if typing.get_origin(hint) in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return args[0] if args else str
    return None


def cli_type(f: dataclasses.Field, hint):
    """The type typer reads a field as."""
    if "cli_type" in f.metadata:
        return f.metadata["cli_type"]
    hint = _plain(hint)
    if f.metadata.get("repeat"):
        return list[str]
    if _sequence_item(hint) is not None:
        return str  # comma-separated
    if f.metadata.get("choices"):
        return Literal[tuple(f.metadata["choices"])]
    if hint in (bool, int, float, str, Path):
        return hint
    raise TypeError(f"{f.name}: no command-line type for {hint}; give the field cli_type= or cli=False")


def cli_default(f: dataclasses.Field, hint):
    """A field's default as the command line shows and reads it."""
    value = field_default(f)
    if _sequence_item(_plain(hint)) is not None and not f.metadata.get("repeat") and value not in (None, ...):
        return ",".join(str(v) for v in value)
    return value


def flags(f: dataclasses.Field, kind) -> list[str]:
    """The option's spellings: ``--kebab-case``, ``--snake_case``, its aliases; a bool's ``--no-`` forms."""
    kebab, snake = "--" + f.name.replace("_", "-"), "--" + f.name
    if kind is bool:
        if "flag" in f.metadata:
            return [f.metadata["flag"], *f.metadata.get("aliases", [])]
        names = [f"{kebab}/--no-{kebab[2:]}"]
        if snake != kebab:
            names.append(f"{snake}/--no_{f.name}")
        return names + list(f.metadata.get("aliases", []))
    return list(dict.fromkeys([kebab, snake, *f.metadata.get("aliases", [])]))


def from_command_line(f: dataclasses.Field, hint, value):
    """A value typer read, as the field holds it: comma-separated text split into a tuple or list."""
    item = _sequence_item(_plain(hint))
    if value is None or item is None or f.metadata.get("repeat") or "cli_type" in f.metadata:
        return value
    try:
        parts = [item(v.strip()) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise DHRDInputError(f"cannot read {value!r} as a comma-separated list") from None
    return tuple(parts) if typing.get_origin(_plain(hint)) is tuple else parts


def command(
    app: typer.Typer,
    arguments: type,
    *,
    name: str | None = None,
    config: bool = True,
    build: Callable | None = None,
    run: Callable | None = None,
    **command_settings,
):
    """Registers ``body(args)`` as the command ``name`` whose options are ``arguments``' fields, and ``--config``
    unless ``config=False``. ``build(config, given)`` makes the arguments from ``--config``'s file and the options
    given on the command line (default: the file's settings, then the given ones, over the dataclass's defaults);
    ``run`` wraps the building so that its errors print as the command's do (``cli._one_line_errors``)."""
    hints = typing.get_type_hints(arguments)
    chosen = option_fields(arguments)

    def decorate(body):
        parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
        if config:
            parameters.append(
                _keyword("config", Path | None, typer.Option(None, "--config", help=CONFIG_HELP, metavar="FILE"))
            )
        parameters += [_keyword(f.name, *_declare(f, hints[f.name], config)) for f in chosen]

        def callback(ctx: typer.Context, **values):
            def make():  # its errors (a bad list, a bad config) are the command's
                given = {
                    f.name: from_command_line(f, hints[f.name], values[f.name]) for f in chosen if _given(ctx, f.name)
                }
                if build is not None:
                    return build(values.get("config"), given)
                settings = {**config_settings(ctx, values.get("config"), chosen, hints), **given}
                _require(ctx, chosen, settings)
                return arguments(**settings)

            return body(run(make) if run else make())

        callback.__signature__ = inspect.Signature(parameters)
        callback.__annotations__ = {p.name: p.annotation for p in parameters}
        callback.__doc__ = body.__doc__
        callback.__name__ = body.__name__
        app.command(name or body.__name__.replace("_", "-"), **command_settings)(callback)
        return body

    return decorate


CONFIG_HELP = "a YAML, JSON or TOML file of these settings (dashes or underscores); the options given override it"


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _declare(f: dataclasses.Field, hint, config: bool) -> tuple:
    """The annotation and ``typer.Option`` (or ``Argument``) of a field. With ``--config``, a required option may
    come from the file instead: typer is told it is optional and ``_require`` checks it once both are read."""
    kind, default = cli_type(f, hint), cli_default(f, hint)
    settings = {"help": f.metadata.get("help") or None}
    if f.metadata.get("metavar"):
        settings["metavar"] = f.metadata["metavar"]
    if default is ... and config and not f.metadata.get("positional"):
        default, settings["help"] = None, f"{settings['help'] or ''}  [required]".strip()
    annotation = kind if default is ... or default is not None else kind | None
    return annotation, _parameter(f, kind, default, settings)


def _parameter(f: dataclasses.Field, kind, default, settings: dict):
    if f.metadata.get("positional"):
        return typer.Argument(default, **settings)
    return typer.Option(default, *flags(f, kind), **settings)


def _require(ctx: typer.Context, chosen: list[dataclasses.Field], settings: dict) -> None:
    """A required option given neither on the command line nor in ``--config``: click's own error."""
    for f in chosen:
        if field_default(f) is ... and settings.get(f.name) is None:
            param = next(p for p in ctx.command.params if p.name == f.name)
            raise MissingParameter(ctx=ctx, param=param)


def config_settings(ctx: typer.Context, path: Path | None, chosen: list[dataclasses.Field], hints: dict) -> dict:
    """``--config``'s settings (one reader for every command: ``train_options.read_config``), each read as the
    same option on the command line is: its type, choices and lists (a YAML list or comma-separated text)."""
    if path is None:
        return {}
    from ..training.train_options import read_config

    fields = {f.name: f for f in chosen if not f.metadata.get("positional")}
    params = {p.name: p for p in ctx.command.params}
    settings = read_config(Path(path), set(fields), "")
    return {
        name: _config_value(ctx, params[name], fields[name], hints[name], value, path)
        for name, value in settings.items()
        if value is not None
    }


def _config_value(ctx: typer.Context, param, f: dataclasses.Field, hint, value, path: Path):
    if f.metadata.get("repeat"):
        value = list(value) if isinstance(value, list | tuple) else [value]
    elif isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    try:
        value = param.process_value(ctx, value)
    except BadParameter as error:
        raise DHRDInputError(f"{path}: {f.name}: {error.message}") from None
    return from_command_line(f, hint, value)


def _keyword(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


__all__ = ["command", "config_settings", "field_default", "option", "option_fields"]
