"""How the client commands print: rich tables and progress on a terminal, tab-separated lines
without colours in a pipe, one JSON document with --json."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

_STYLES = {
    "success": "green",
    "failed": "red",
    "timed_out": "red",
    "lost": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "pending": "cyan",
}


class Output:
    def __init__(
        self, as_json: bool = False, stream: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout
        self.err = err or sys.stderr
        self.tty = self.stream.isatty()
        self.err_tty = self.err.isatty()
        self._console = Console(file=self.stream, highlight=False) if self.tty else None
        self._err_console = Console(file=self.err, highlight=False) if self.err_tty else None

    # --- documents and tables -------------------------------------------------------------

    def document(self, value: Any) -> None:
        print(json.dumps(value, indent=2), file=self.stream)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A rich table on a terminal; in a pipe, one tab-separated line per row (no header),
        so ``cut -f1`` gives the ids."""
        if self._console is None:
            for row in rows:
                print("\t".join(_cell(c) for c in row), file=self.stream)
            return
        table = Table(*headers, box=None, header_style="bold", pad_edge=False)
        for row in rows:
            table.add_row(*(self._styled(_cell(c)) for c in row))
        self._console.print(table)

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """A record as 'name value' lines (tab-separated in a pipe)."""
        if self._console is None:
            for name, value in pairs:
                print(f"{name}\t{_cell(value)}", file=self.stream)
            return
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for name, value in pairs:
            table.add_row(name, self._styled(_cell(value)))
        self._console.print(table)

    def line(self, text: str = "") -> None:
        print(text, file=self.stream)

    def note(self, text: str) -> None:
        """A message for the person, on standard error (never mixed into data)."""
        print(text, file=self.err)

    def _styled(self, text: str) -> str:
        style = _STYLES.get(text)
        return f"[{style}]{text}[/{style}]" if style else text.replace("[", r"\[")

    # --- progress ------------------------------------------------------------------------

    @contextmanager
    def progress(self, text: str) -> Iterator[Progress]:
        """A live status line (spinner, text, elapsed time) on a terminal's standard error,
        refreshed on its own while a request waits; nothing in a pipe."""
        if self._err_console is None:
            yield Progress(None)
            return
        live = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self._err_console,
            transient=True,
        )
        with live:
            task = live.add_task(text, total=None)
            yield Progress(lambda description: live.update(task, description=description))


class Progress:
    def __init__(self, update: Callable[[str], None] | None) -> None:
        self._update = update

    def update(self, text: str) -> None:
        if self._update is not None:
            self._update(text)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value).replace("\t", " ").replace("\n", " ")
