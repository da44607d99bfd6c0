"""Where the command line prints: messages on stderr, results (tables, JSON) on stdout.

User-supplied strings are printed without rich markup or emoji codes (`[x]`, `:name:` stay literal).
"""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, markup=False, emoji=False, highlight=False)
out_console = Console(markup=False, emoji=False, highlight=False)


def print_json(obj: object) -> None:
    """`obj` as indented JSON on stdout, non-ASCII text as itself (Devanagari stays readable)."""
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def print_metrics(title: str, m: dict) -> None:
    """An evaluation's rows, accuracy and macro-F1 as a table; also without the classes no training row has, when
    there are such classes (they are scored but can never be predicted)."""
    table = Table(title=title)
    sub = m.get("learnable")
    extra = [f"{what} w/o untrained classes: {', '.join(sub['excluded'])}" for what in ("acc.", "F1")] if sub else []
    for col in ["rows", "accuracy", "macro-F1", *extra]:
        table.add_column(col, justify="right")
    cells = [str(m["rows"]), f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}"]
    table.add_row(*cells, *([f"{sub['accuracy']:.4f}", f"{sub['macro_f1']:.4f}"] if sub else []))
    out_console.print(table)
