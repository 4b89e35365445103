"""What every rule family of the checker shares: the text, positions and findings.

This module owns ``Context``: the recipe text and its positions (``Located``), the raw
data, the parts that are well-formed (parameters, steps, step names), what the checks
learn on the way (variables, guards, which ICD parameters each recipe parameter
feeds) and the diagnostics, with the two ways to report one (``error`` at a path,
``error_at`` at an exact position). A family module is a set of functions of a
Context; none of them keeps state of its own.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from daemon.diagnostics import Diagnostic, PathPart
from daemon.recipe.guards import Guard
from daemon.recipe.models import Parameter
from daemon.recipe.names import Variable
from daemon.recipe.yaml import Located
from drivers.icd import ParamSpec

Path = tuple[PathPart, ...]
MAX_LISTED = 20  # names a hint lists before it says "and N more"
# did-you-mean searches over a recipe's own names (steps, parameters): each costs time
# linear in the names, so a recipe of thousands of bad references gets this many
SUGGESTIONS = 50


@dataclass(slots=True)
class Context:
    """One recipe text under check."""

    text: str
    filename: str
    loc: Located = field(default_factory=lambda: Located(None))
    raw: dict[str, Any] = field(default_factory=dict)
    diags: list[Diagnostic] = field(default_factory=list)
    # the well-formed parts, and every step name written (even of a malformed step)
    params: dict[str, Parameter] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    # learned by the checks
    variables: dict[str, Variable] = field(default_factory=dict)
    binders: dict[str, list[str]] = field(default_factory=dict)  # variable -> steps binding it
    guards: dict[tuple[str, int], Guard] = field(default_factory=dict)
    param_uses: dict[str, list[ParamSpec]] = field(default_factory=dict)
    suggestions_left: int = SUGGESTIONS
    _lines: list[str] | None = None
    _sorted_names: list[str] | None = None

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.splitlines()
        return self._lines

    @property
    def sorted_names(self) -> list[str]:
        """Every step name written, sorted (computed once)."""
        if self._sorted_names is None:
            self._sorted_names = sorted(self.names)
        return self._sorted_names

    def suggest(self, word: str, names: Iterable[str], prefix: str = "", suffix: str = "") -> str:
        """``did_you_mean`` over the recipe's own names, within the SUGGESTIONS budget."""
        if self.suggestions_left <= 0:
            return ""
        self.suggestions_left -= 1
        return did_you_mean(word, names, prefix, suffix)

    def error(self, path: Iterable[PathPart], message: str, hint: str = "", *, key: bool = False):
        """A diagnostic at the value (or, with ``key``, the key) written at ``path``."""
        p = tuple(path)
        line, col = self.loc.key_pos(p) if key else self.loc.value_pos(p)
        self.diags.append(Diagnostic(self.filename, line, col, message, p, hint))

    def error_at(self, pos: tuple[int, int], path: Iterable[PathPart], message: str, hint: str):
        """A diagnostic at an exact (line, column)."""
        self.diags.append(Diagnostic(self.filename, pos[0], pos[1], message, tuple(path), hint))

    def raw_step(self, name: str) -> dict[str, Any]:
        """The step as written (a mapping, or {} when it is something else)."""
        steps = self.raw.get("steps")
        raw = steps.get(name) if isinstance(steps, dict) else None
        return raw if isinstance(raw, dict) else {}

    def sorted_diagnostics(self) -> list[Diagnostic]:
        """Every diagnostic once, by position."""
        return sorted(set(self.diags), key=lambda d: (d.line, d.column, d.message))


def did_you_mean(word: str, options: Iterable[str], prefix: str = "", suffix: str = "") -> str:
    """``did you mean 'x'? `` for the closest option, or "" (difflib, as editors do)."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean '{prefix}{close[0]}{suffix}'? " if close else ""


def listing(names: Iterable[str]) -> str:
    """``a, b, c`` for a hint; long lists end in ``... and N more``."""
    items = list(names)
    if len(items) <= MAX_LISTED:
        return ", ".join(items)
    return ", ".join(items[:MAX_LISTED]) + f", ... and {len(items) - MAX_LISTED} more"
