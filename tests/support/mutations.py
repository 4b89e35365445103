"""hypothesis: valid YAML data with a few edits, for every loader's hostile-input tests.

``mutated(base, values, keys)`` draws a document from ``base`` (a strategy of plain
data, e.g. the recipe library or a valid site) and applies one to four edits at
random places: delete an entry, replace a value with a drawn one, rename a key, add
a key. ``assert_answered`` is the property every loader keeps whatever it is given:
a value and no diagnostics, or no value and diagnostics at real positions, never an
internal error. The one copy for tests/recipes and tests/config.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from daemon.diagnostics import Diagnostic


def assert_answered(value: object, diagnostics: list[Diagnostic]) -> None:
    if value is None:
        assert diagnostics, "no value and no reason"
    else:
        assert diagnostics == []
    for d in diagnostics:
        assert "internal error" not in d.message, d.format()
        assert d.line >= 1 and d.column >= 1


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``node`` (dict keys and list indexes), the root first."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths_of(v, (*prefix, i))
    return out


def value_at(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


@st.composite
def mutated(
    draw: st.DrawFn,
    base: st.SearchStrategy[Any],
    values: st.SearchStrategy[Any],
    keys: st.SearchStrategy[Any],
) -> Any:
    data = copy.deepcopy(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in paths_of(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = value_at(data, path[:-1]), path[-1]
        action = draw(st.sampled_from(["delete", "replace", "rename", "add"]))
        if action == "delete":
            del parent[last]
        elif action == "replace":
            parent[last] = draw(values)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(keys)] = parent.pop(last)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
    return data
