"""How client commands print: --output json is the API's JSON as it came, one document;
text is rich tables and `key: value` lines, for a person (and for grep: no borders)."""

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def console(stderr: bool = False) -> Console:
    """A console that does not cut a table to 80 columns when stdout is a pipe or a file."""
    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, width=1000)
    return out


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))


def emit_json_line(document: Any) -> None:
    click.echo(json.dumps(document, ensure_ascii=False, default=str))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(box=None, pad_edge=False, header_style="bold")
    for header in headers:
        grid.add_column(header, no_wrap=True)
    for row in rows:
        grid.add_row(*(escape(cell(value)) for value in row))
    out = console()
    if out.is_terminal:
        out.print(grid)
        return
    with out.capture() as captured:
        out.print(grid)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    out = console()
    for name, value in pairs:
        out.print(f"[bold]{escape(name)}:[/bold] {escape(cell(value))}")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def when(iso: str | None) -> str:
    """An ISO time as the API sends it, to the second, without its zone (the API's is UTC)."""
    if not iso:
        return "-"
    return iso.replace("T", " ")[:19]


def metrics_text(metrics: dict[str, Any], most: int | None = None) -> str:
    """Scalar metrics as `name value` pairs, losses first; per-class ones (`val_f1[3]`) left
    out: `jobs show -o json` has them all."""
    names = sorted((n for n in metrics if "[" not in n), key=lambda n: ("loss" not in n, n))
    return "  ".join(f"{name} {cell(metrics[name])}" for name in names[:most])
