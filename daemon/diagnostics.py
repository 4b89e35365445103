"""Compiler-style diagnostics for files authors write (recipes, and anything else in YAML).

This module owns the ``Diagnostic`` value (file, line, column, path, message, hint) and
its one text format (and ``describe``, the words for a value), shared by every command
that reports problems in a file::

    recipes/cart.yaml:12:7: error: unknown program 'expand' [path steps.grow.op]
      hint: programs are: cell_selection, activation, ...

Lines and columns are 1-based, like every compiler and editor. ``validate_files`` is
the one ``validate FILE...`` command loop (recipes and sites). It imports nothing else
from the project.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO, TypeVar

Severity = Literal["error", "warning"]
PathPart = str | int
T = TypeVar("T")


def format_path(path: Sequence[PathPart]) -> str:
    """``("steps", "expand", "next", 0, "when")`` -> ``steps.expand.next[0].when``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """One problem found in a file, where it is, and how to fix it."""

    file: str
    line: int
    column: int
    message: str
    path: tuple[PathPart, ...] = ()
    hint: str = ""
    severity: Severity = "error"

    @property
    def path_text(self) -> str:
        return format_path(self.path)

    def format(self) -> str:
        """``file:line:col: error: message [path p]`` and, when there is one, a hint line."""
        head = f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"
        if self.path:
            head += f" [path {self.path_text}]"
        if self.hint:
            head += f"\n  hint: {self.hint}"
        return head


def describe(value: Any) -> str:
    """A value as a message names it: ``text ('abc')``, ``a number (2.5)``, ``a list``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a bool ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"text ({shown!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def format_all(diagnostics: Iterable[Diagnostic]) -> str:
    """All diagnostics, sorted by position, one block per diagnostic."""
    return "\n".join(d.format() for d in sorted(diagnostics, key=_position))


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def _position(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.file, d.line, d.column, d.message)


def validate_files(
    paths: Sequence[str],
    load: Callable[[str], T],
    ok: Callable[[T], str],
    refused: type[Exception],
    out: TextIO | None = None,
) -> int:
    """The ``validate FILE...`` commands: ``FILE: ok <ok(value)>`` on ``out`` for each
    file that loads, every diagnostic of the others on stderr, then a count of errors
    and files; exit status 1 when any file was refused by ``load`` (raising
    ``refused``, an exception with ``diagnostics``), else 0."""
    out = out or sys.stdout
    failed = errors = 0
    for path in paths:
        try:
            value = load(path)
        except refused as exc:
            diagnostics: list[Diagnostic] = getattr(exc, "diagnostics", [])
            failed += 1
            errors += len(diagnostics)
            print(format_all(diagnostics), file=sys.stderr)
            continue
        print(f"{path}: ok {ok(value)}", file=out)
    if failed:
        print(
            f"{errors} error{'s' if errors != 1 else ''} in {failed} of {len(paths)} "
            f"file{'s' if len(paths) != 1 else ''}",
            file=sys.stderr,
        )
        return 1
    return 0
