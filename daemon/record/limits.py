"""QC limits as the recipe states them: read from the guards of its branches.

A recipe has no separate table of specifications: its limits are the guards that send
a batch to a ``fail`` step. This module reads them, as far as a guard states one:

* a branch whose target is a ``fail`` step is a *failure* guard: each part of its
  top-level ``||`` is a condition that fails the value (``endotoxin >= 5.0`` ->
  the limit ``endotoxin < 5.0``; the value passes when the part is false);
* a branch whose target is not a ``fail`` step, while every later branch of the step
  (the fallback included) goes to a ``fail`` step, is an *acceptance* guard: each part
  of its top-level ``&&`` must hold (``viability >= min_viability_pct && cd3 >= 50.0``);
* any other branch is a decision (how many expansion blocks, which step next), not a
  limit, and is not shown as one.

A part is evaluated on its own (compiled with ``daemon.recipe.compile_guard``, the
types the recipe's check gave its names) with the values the batch had when the QC
result was bound, so the verdict is the recipe's own arithmetic, not a copy of it. A
guard the splitting cannot take apart (a top-level ``? :``) stays whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from daemon.recipe import Guard, GuardError, Recipe, compile_guard
from daemon.record.model import Limit

__all__ = ["Condition", "conditions", "limits_for", "split"]

_FLIP: Final = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}
_COMPARISON: Final = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|!=|<|>)\s*([^<>=!&|?]+?)\s*$")
_IDENT: Final = re.compile(r"^\s*([A-Za-z_]\w*)\s*$")


@dataclass(frozen=True, slots=True)
class Condition:
    """One part of a guard that states a limit."""

    step: str  # the step whose branch holds the guard
    guard: str  # the whole guard, as written
    part: Guard  # the part, compiled on its own
    failing: bool  # the part describes failure (a failure guard)

    @property
    def limit(self) -> str:
        """What must hold for a value to pass, as text."""
        return negate(self.part.text) if self.failing else self.part.text.strip()

    def verdict(self, env: Mapping[str, Any]) -> Limit:
        try:
            holds = self.part.evaluate(env)
        except GuardError as exc:
            return Limit(self.limit, self.guard, self.step, None, str(exc))
        return Limit(self.limit, self.guard, self.step, holds != self.failing)


def split(text: str, op: str) -> list[str] | None:
    """The parts of ``text`` at its top-level ``op`` (``||`` or ``&&``), outside
    parentheses, brackets and string literals; None when a top-level ``?`` (a
    conditional, which binds looser than both) makes the split wrong."""
    parts: list[str] = []
    depth, start, i, quote = 0, 0, 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch == "?":
            return None
        elif depth == 0 and text.startswith(op, i):
            parts.append(text[start:i].strip())
            start = i + len(op)
            i += len(op)
            continue
        i += 1
    parts.append(text[start:].strip())
    return parts


def negate(text: str) -> str:
    """``text`` negated, readably: a comparison flipped, a bare name ``!name``."""
    text = text.strip()
    if (m := _COMPARISON.match(text)) is not None:
        return f"{m[1]} {_FLIP[m[2]]} {m[3]}"
    if (m := _IDENT.match(text)) is not None:
        return f"!{m[1]}"
    return f"!({text})"


def conditions(recipe: Recipe) -> list[Condition]:
    """Every limit the recipe's guards state (see the module doc)."""
    out: list[Condition] = []
    steps = frozenset(recipe.steps)
    for step in recipe.steps:
        branches = recipe.branches(step)
        for index, (guard, target) in enumerate(branches):
            if guard is None:
                continue
            failing = recipe.kind(target) == "fail"
            later = [t for _g, t in branches[index + 1 :]]
            accepting = not failing and bool(later) and all(recipe.kind(t) == "fail" for t in later)
            if not (failing or accepting):
                continue
            parts = split(guard.text, "||" if failing else "&&")
            if parts is None or (accepting and split(guard.text, "||") != [guard.text.strip()]):
                parts = [guard.text]
            for part in parts:
                compiled, problems = compile_guard(part, guard.types, steps)
                if compiled is None or problems:  # cannot stand alone: keep the guard whole
                    compiled = guard
                out.append(Condition(step, guard.text, compiled, failing))
                if compiled is guard:
                    break
    return out


def limits_for(found: list[Condition], variable: str, env: Mapping[str, Any]) -> tuple[Limit, ...]:
    """The limits on ``variable`` (the conditions that read it), evaluated with ``env``."""
    return tuple(c.verdict(env) for c in found if variable in c.part.names)
