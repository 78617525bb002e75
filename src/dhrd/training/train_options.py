"""``dhrd train``'s options without torch or transformers: its help and its option errors in a fraction of a second.

``dhrd train``'s parser is generated from ``DHRDTrainingArguments``, a transformers ``TrainingArguments``
(``dhrd.training.argparser``), and building it imports torch and transformers: seconds. So its argparse actions are also
kept as a table (JSON): ``train_options.json`` in the package, and in the user cache (``<cache>/train-options``)
whenever the real parser is built for versions the packaged one does not match. A table is keyed by what the
parser is built from (the dhrd, transformers and Python versions and the text of the modules that declare it):
one whose key differs is never used. The parser rebuilt from a table applies argparse's own conversions (int,
float, str) and choices exactly as the real one does and lets every other value through, so it prints the same
help and rejects arguments only where the real parser would, with the same message; what it accepts goes to
the real parser (and ``TrainingArguments``' own checks). After a change to the options, regenerate the packaged
table with ``python -m dhrd.training.train_options``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..errors import DHRDInputError, cache_root
from ..provenance import dhrd_version

PACKAGED = Path(__file__).with_name("train_options.json")
# the modules whose text decides the parser: a change to any of them retires every table made before it
# the modules the table is made from: DHRDTrainingArguments' own and its field groups', the parser's and this one
SOURCES = (
    "training_args.py",
    "option_fields.py",
    "data_fields.py",
    "model_fields.py",
    "loss_fields.py",
    "argparser.py",
    "train_options.py",
)
DESCRIPTION = (
    "Train a classifier, evaluate it on the validation split every epoch, keep the best, save it. Flags are "
    "DHRDTrainingArguments' fields (transformers' names: --num_train_epochs, --learning_rate, --report_to, ...), "
    "with dashes or underscores; every boolean flag also has a --no-<flag> form."
)
# the argparse actions a table can carry, by class, with the name add_argument knows each by
ACTIONS = {
    "_StoreAction": "store",
    "_StoreConstAction": "store_const",
    "_StoreTrueAction": "store_true",
    "_StoreFalseAction": "store_false",
    "_AppendAction": "append",
    "_HelpAction": "help",
}
CONVERSIONS = {"int": int, "float": float, "str": str}  # the types a rebuilt parser applies itself
SETTINGS = (
    "prog",
    "usage",
    "description",
    "epilog",
    "prefix_chars",
    "fromfile_prefix_chars",
    "argument_default",
    "conflict_handler",
    "allow_abbrev",
)
PLAIN = (type(None), bool, int, float, str)
KEPT = 8  # cached tables (one per set of versions and sources)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown after each help text, in a help column that leaves room for the long flag names."""

    def __init__(self, prog: str):
        width = min(shutil.get_terminal_size((120, 24)).columns, 140)
        super().__init__(prog, max_help_position=44, width=width)


def usage_error(message: str, prog: str) -> DHRDInputError:
    return DHRDInputError(f"{message} (see: {prog} --help)")


def no_such_option(words: list[str], prog: str) -> DHRDInputError:
    return usage_error(f"no such option: {' '.join(words)}", prog)


def auto_alpha(argv: list[str]) -> list[str]:
    """``--alpha auto`` (or ``--alpha=auto``) is ``--alpha-search``: alpha's own option takes numbers."""
    result, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word in ("--alpha", "--alpha=auto") and (word.endswith("=auto") or argv[i + 1 : i + 2] == ["auto"]):
            result.append("--alpha_search")
            i += 1 if word.endswith("=auto") else 2
            continue
        result.append(word)
        i += 1
    return result


def read_config(path: Path, fields: set[str], prog: str = "") -> dict:
    """A YAML, JSON or TOML mapping of field names (dashes or underscores); names outside ``fields`` are errors.
    The one reader of every command's ``--config`` (``dhrd train``, ``dhrd reproduce``)."""
    path = Path(path)
    if not path.is_file():
        raise DHRDInputError(f"{path}: config file not found")
    from ..data.tables import read_text

    text = read_text(path)  # UTF-8, a byte-order mark accepted, a bad byte named by line and offset
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except (ValueError, ImportError) as error:
        raise DHRDInputError(f"{path}: unreadable config ({str(error).splitlines()[0]})") from None
    except Exception as error:  # yaml's own error types
        raise DHRDInputError(f"{path}: unreadable config ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DHRDInputError(f"{path}: expected a mapping of settings")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    if "alpha_search" in fields and str(data.get("alpha")).strip().lower() == "auto":  # alpha: auto
        del data["alpha"]
        data["alpha_search"] = True
    unknown = sorted(set(data) - fields)
    if unknown:
        message = f"{path}: unknown setting {', '.join(unknown)}"
        raise usage_error(message, prog) if prog else DHRDInputError(f"{message}; known: {', '.join(sorted(fields))}")
    return data


def with_config(parser: argparse.ArgumentParser, argv: list[str], fields: set[str]) -> list[str]:
    """``argv`` to parse once ``--config``'s settings are the parser's defaults (the command line overrides
    them) and ``--alpha auto`` is ``--alpha-search``."""
    first = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    first.add_argument("--config")
    try:
        known, _ = first.parse_known_args(argv)
    except argparse.ArgumentError:  # --config without a file: the parser itself reports it, in one line
        known = argparse.Namespace(config=None)
    if known.config:
        parser.set_defaults(**read_config(Path(known.config), fields, parser.prog))
    return auto_alpha(argv)


# ------------------------------------------------------------------------------------------------ the table
def table_of(parser: argparse.ArgumentParser, fields: list[str]) -> dict | None:
    """The parser as plain data, or None where it holds an action or value a table cannot carry exactly."""
    groups = parser._action_groups
    if parser._mutually_exclusive_groups or groups[:2] != [parser._positionals, parser._optionals]:
        return None
    actions = []
    for action in parser._actions:
        entry = _entry(action)
        if entry is None:
            return None
        entry["group"] = next(i for i, group in enumerate(groups) if action in group._group_actions)
        actions.append(entry)
    return {
        "parser": {name: getattr(parser, name) for name in SETTINGS},
        "groups": [[group.title, group.description] for group in groups],
        "actions": actions,
        "fields": sorted(fields),
    }


def _entry(action: argparse.Action) -> dict | None:
    """One action's ``add_argument`` keywords (those its class takes), or None."""
    import inspect  # only where a table is made: the real parser is built then anyway

    name = ACTIONS.get(type(action).__name__)
    if name is None or not action.option_strings:
        return None
    accepted = inspect.signature(type(action).__init__).parameters
    entry = {k: getattr(action, k) for k in accepted if k not in ("self", "option_strings") and hasattr(action, k)}
    if entry.get("choices") is not None:
        entry["choices"] = list(entry["choices"])
        # only string choices, and a conversion that leaves strings as they are, are checked alike
        if not all(isinstance(c, str) for c in entry["choices"]) or not _keeps_strings(entry.get("type")):
            return None
    if entry.get("type") is not None:
        entry["type"] = _type_name(entry["type"])
    if not all(_plain(value) for value in entry.values()):
        return None
    return {"action": name, "flags": list(action.option_strings), **entry}


def _type_name(kind) -> str | list:
    """``"int"`` for argparse's own conversions; ``["as is", name]`` for any other (a rebuilt parser lets its
    values through: only the real parser rejects them)."""
    if kind in CONVERSIONS.values():
        return kind.__name__
    return ["as is", getattr(kind, "__name__", repr(kind))]


def _keeps_strings(kind) -> bool:
    """str, no type, or transformers' choice conversion (``str(choice) -> choice``: strings stay strings)."""
    return kind in (None, str) or getattr(kind, "__qualname__", "").startswith("make_choice_type_function.")


def _plain(value) -> bool:
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, PLAIN) and value == value  # NaN does not survive JSON


class TableParser(argparse.ArgumentParser):
    """A parser rebuilt from a table; its errors are ``DHRDInputError`` as the real parser's are."""

    def error(self, message: str):
        raise usage_error(message, self.prog)


def parser_from(table: dict) -> TableParser:
    parser = TableParser(formatter_class=HelpFormatter, add_help=False, **table["parser"])
    groups = [parser._positionals, parser._optionals]
    groups += [parser.add_argument_group(title, description) for title, description in table["groups"][2:]]
    for entry in table["actions"]:
        # argparse tells its SUPPRESS marker by identity: JSON's copy of the string is made the marker again
        entry = {k: argparse.SUPPRESS if v == argparse.SUPPRESS else v for k, v in entry.items()}
        flags, group = entry.pop("flags"), groups[entry.pop("group")]
        if isinstance(entry.get("type"), list):
            entry["type"] = _as_is(entry["type"][1])
        elif entry.get("type") is not None:
            entry["type"] = CONVERSIONS[entry["type"]]
        group.add_argument(*flags, **entry)
    return parser


def _as_is(name: str):
    def convert(value):
        return value

    convert.__name__ = name  # what a help text's %(type)s would show
    return convert


# ------------------------------------------------------------------------------------------- where tables are
def table_key() -> dict | None:
    """What a table was made from; None where it cannot be told (a module's source is not on disk)."""
    try:
        text = b"".join((Path(__file__).parent / name).read_bytes().replace(b"\r\n", b"\n") for name in SOURCES)
        transformers = version("transformers")
    except (OSError, PackageNotFoundError):
        return None
    return {
        "dhrd": dhrd_version(),
        "transformers": transformers,
        "python": "{}.{}".format(*sys.version_info[:2]),
        "sources": hashlib.sha256(text).hexdigest()[:16],
    }


def cached_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "train-options" / f"{digest}.json"


def load_table() -> dict | None:
    """The packaged table, else the cached one, that matches the installed versions; None where neither does."""
    key = table_key()
    if key is None:
        return None
    for path in (PACKAGED, cached_path(key)):
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(table, dict) and table.get("key") == key:
            return table
    return None


def write_table(path: Path, table: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)  # a reader never sees half a table
    return path


def remember(parser: argparse.ArgumentParser, fields: list[str]) -> None:
    """The real parser's table, into the user cache where no table matches yet: the next help or option error
    needs neither torch nor transformers. Best effort: an unwritable cache only keeps them slow."""
    key = table_key()
    if key is None or load_table() is not None:
        return
    table = table_of(parser, fields)
    if table is None:
        return
    try:
        path = write_table(cached_path(key), {"key": key, **table})
        # each edit of the options in a source checkout makes a new table: the most recent few are kept
        for old in sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[KEPT:]:
            old.unlink()
    except OSError:
        pass


def check_train_arguments(argv: list[str]) -> None:
    """``dhrd train``'s help (printed; exits) and option errors (``DHRDInputError``, the real parser's line)
    from the table alone. Returns where the arguments pass, or no table matches: the real parser then runs."""
    table = load_table()
    if table is None:
        return
    try:
        parser = parser_from(table)
    except (TypeError, ValueError, KeyError, argparse.ArgumentError):  # a table this argparse cannot rebuild
        return
    _, left = parser.parse_known_args(with_config(parser, argv, set(table["fields"])))
    if left:
        raise no_such_option(left, parser.prog)


if __name__ == "__main__":  # run as a program this module is __main__: argparser imports the package's own copy
    from .argparser import write_packaged

    print(f"written: {write_packaged()}")


__all__ = ["check_train_arguments", "load_table", "parser_from", "remember", "table_of"]
