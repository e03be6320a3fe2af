"""Output formats, defined once for the CLI: every result-printing command takes `--json`, and
`--csv` / `--nl` too where its result is a list of rows. A command builds its data once; the text
output is rendered from that same data, so the formats cannot drift apart."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import click

from .errors import UsageError

JSON_HELP = "Print JSON instead of text."
ROW_FORMATS = {
    "csv": "Print the result rows as CSV.",
    "nl": "Print the result rows as newline-delimited JSON, one object a line.",
}


def to_json(data, indent: int | None = 2) -> str:
    # default=str: paths and the odd non-JSON value print as text instead of failing the command
    return json.dumps(data, indent=indent, ensure_ascii=False, default=str)


def to_csv(rows: list[dict]) -> str:
    """Rows as CSV: the columns are every key in order of first appearance; lists and dicts as JSON."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: to_json(v, indent=None) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    return buffer.getvalue()


@dataclass(frozen=True)
class Output:
    """The format one command run prints in: text, json, csv or nl."""

    format: str = "text"

    def emit(self, data, text: Callable[..., Iterable[str]], rows: list[dict] | None = None) -> None:
        """Print `data` as JSON, its `rows` (default: data itself, when it is a list) as CSV or
        newline-delimited JSON, or the lines `text(data)` renders from it."""
        rows = data if rows is None else rows
        if self.format == "json":
            click.echo(to_json(data))
        elif self.format == "csv":
            click.echo(to_csv(rows), nl=False)
        elif self.format == "nl":
            for row in rows:
                click.echo(to_json(row, indent=None))
        else:
            for line in text(data):
                click.echo(line)


def output_options(rows: bool = False):
    """Decorator for a command: adds `--json` (and `--csv`, `--nl` when rows=True) and passes the
    chosen format to the command as `output`, an Output. At most one of the flags may be given."""
    formats = {"json": JSON_HELP, **(ROW_FORMATS if rows else {})}

    def decorate(fn):
        @functools.wraps(fn)
        def command(*args, **kwargs):
            chosen = [name for name in formats if kwargs.pop(f"format_{name}")]
            if len(chosen) > 1:
                raise UsageError("choose one output format, not " + " and ".join(f"--{n}" for n in chosen))
            return fn(*args, output=Output(chosen[0] if chosen else "text"), **kwargs)

        # click lists options in the reverse of the order they are applied
        for name, help_text in reversed(formats.items()):
            command = click.option(f"--{name}", f"format_{name}", is_flag=True, help=help_text)(command)
        return command

    return decorate
