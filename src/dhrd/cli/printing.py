"""What the commands print: the consoles (results on stdout, messages on stderr), tables of metrics and
classes, and a command's work run so that bad input is one line and exit code 2, never a traceback."""

from __future__ import annotations

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import DHRDInputError

# no emoji codes: a user's text such as "f1:x:" in an error or a label name must print as written
console = Console(stderr=True, emoji=False)
out = Console(emoji=False)


def command_work(fn):
    """A command's work. Bad input: one line on stderr and exit code 2, never a traceback."""
    hide_transformers_bars()
    return one_line_errors(fn)


def error_line(message: str) -> None:
    """``error: ...`` on stderr as one line: never wrapped, markup in the message printed as is (brackets in it
    are text, as in pip install 'dhrd[tensorboard]')."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``message`` as the one error line; the exit (code 2) for the caller to raise."""
    error_line(message)
    return typer.Exit(2)


def one_line_errors(fn):
    """Bad input: one line on stderr and exit code 2, never a traceback."""
    try:
        return fn()
    except DHRDInputError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        console.print("interrupted: what was written so far is kept; run the same command again to resume")
        raise typer.Exit(130) from None


def metrics_table(metrics: dict, title: str) -> Group:
    # the title (it names files and folders) is a line of its own: as a table title it would fold at the table's
    # width, splitting a path mid-name however wide the terminal
    table = Table()
    table.add_column("task")
    table.add_column("metrics")
    table.add_column("score", justify="right")
    for name, values in metrics["tasks"].items():
        shown = ", ".join(f"{k} {v:.2f}" for k, v in values.items() if k not in ("score", "examples", "rows"))
        table.add_row(name, f"{shown} ({values['examples']} examples)", f"{values['score']:.2f}")
    if len(metrics["tasks"]) > 1:
        table.add_row("average", "", f"{metrics['score']:.2f}")
    return Group(Text(title, style="italic"), table)


def warn_not_learnt(metrics: dict, split: str) -> None:
    """A warning on stderr for each task the model scored no better than always answering one label."""
    from ..data.task_metrics import not_learnt

    for line in not_learnt(metrics):
        console.print(f"[bold yellow]warning:[/] {escape(split)}: {escape(line)}", highlight=False, soft_wrap=True)


def print_classes(classes: dict, shown: int = 20) -> None:
    """The per-class report, one table per task (the first ``shown`` classes; the JSON has them all)."""
    for task, report in classes.items():
        table = Table(title=f"{task}: per class (per {report['unit']})")
        for column in ("class", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "class" else "right")
        rows = list(report["per_class"].items())
        for name, values in [*rows[:shown], ("macro avg", report["macro_avg"])]:
            scores = [f"{values[k]:.1f}" for k in ("precision", "recall", "f1")]
            table.add_row(escape(str(name)), *scores, str(values["support"]))
        out.print(table)
        if len(rows) > shown:
            out.print(f"({len(rows) - shown} more classes in the JSON)")


def print_alpha_search(table: dict) -> None:
    """``--alpha auto``'s search, as its ``alpha-search.md`` gives it: each candidate's dev score, its lead over
    pooled with the interval, the time it trained; then what the chosen lead is worth and the search's cost."""
    from ..training.tuning import chosen_lead, interval_text, search_cost

    rows = [
        (
            escape(r["candidate"]),
            r["state"],
            "" if r["dev_score"] is None else f"{r['dev_score']:.1f}",
            interval_text(r.get("against_pooled")),
            f"{r['seconds']:.0f}",
        )
        for r in table["candidates"]
    ]
    title = f"alpha search on a dev split of {table['dev_fraction']:g} of the training rows"
    print_table(title, ("candidate", "state", "dev score", "vs pooled (95% CI)", "seconds"), rows)
    out.print(f"chosen: {escape(table['chosen'])}; {search_cost(table)}.{escape(chosen_lead(table))}", soft_wrap=True)


def print_table(title: str, columns, rows) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def hide_transformers_bars() -> None:
    """transformers' own bars (loading and writing weight shards) between a phase's bars: noise in a terminal.
    Trainer's bar and dhrd's are plain tqdm and stay. Called as a command's work starts, not at start-up: help,
    --version and option errors never import transformers."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
