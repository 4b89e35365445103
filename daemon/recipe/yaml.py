"""YAML with positions: plain data plus the exact line and column of every key and value.

This module owns reading an author's YAML text into plain Python data (dicts, lists,
scalars) together with a position table keyed by path, and the detection of what
PyYAML would silently accept: duplicate keys (PyYAML keeps the last one), non-string
keys and merge keys. It uses PyYAML's ``compose`` node tree, whose marks give the
position of every node; scalars are built by PyYAML's own SafeConstructor, so the
values are exactly what ``yaml.safe_load`` would produce.

Work is bounded (``daemon.recipe.limits``): while composing, the aliases, the nodes
and the nesting depth are counted and composing stops at the first limit; while
walking, every node visited counts, so an alias is paid for each time it is used and
nested aliases (the "billion laughs") stop after ``limits.nodes`` nodes, not 9^9.

Positions are 1-based (line, column). Nothing here knows what a recipe is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.error import Mark
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from daemon.diagnostics import Diagnostic, PathPart
from daemon.recipe.limits import LIMITS, Limits

Path = tuple[PathPart, ...]
Pos = tuple[int, int]

_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_DEPTH_HINT = "a recipe is about 6 levels deep"


class LimitExceeded(Exception):
    """The text asks for more work than a limit allows; ``pos`` is where it did."""

    def __init__(self, message: str, pos: tuple[int, int], hint: str = "") -> None:
        super().__init__(message)
        self.message, self.pos, self.hint = message, pos, hint


def _mark_pos(mark: Mark | None) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases, nodes and depth while it composes."""

    def __init__(self, text: str, limits: Limits) -> None:
        super().__init__(text)
        self.limits = limits
        self.aliases = 0
        self.nodes = 0
        self.depth = 0

    def compose_node(self, parent: Node | None, index: object) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self.aliases += 1
            if self.aliases > self.limits.aliases:
                raise LimitExceeded(
                    f"the YAML uses more than {self.limits.aliases} aliases (the limit)",
                    _mark_pos(event.start_mark),
                    "write the values out instead of '*name'",
                )
            return super().compose_node(parent, index)
        self.nodes += 1
        if self.nodes > self.limits.nodes:
            raise LimitExceeded(
                f"the YAML has more than {self.limits.nodes} nodes (the limit)",
                _mark_pos(event.start_mark),
            )
        self.depth += 1
        try:
            if self.depth > self.limits.depth:
                raise LimitExceeded(
                    f"the YAML is nested deeper than {self.limits.depth} levels (the limit)",
                    _mark_pos(event.start_mark),
                    _DEPTH_HINT,
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def compose(text: str, limits: Limits = LIMITS) -> Node | None:
    """The node tree of one YAML document (None when empty), within ``limits``."""
    loader = _Loader(text, limits)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


@dataclass(slots=True)
class Located:
    """Plain data and where each part of it was written."""

    data: Any
    values: dict[Path, Pos] = field(default_factory=dict)  # path -> position of the value
    keys: dict[Path, Pos] = field(default_factory=dict)  # path -> position of its key
    styles: dict[Path, str | None] = field(default_factory=dict)  # scalar style ('' = plain)

    def value_pos(self, path: Path) -> Pos:
        """Position of the value at ``path``, or of its nearest written ancestor."""
        p = tuple(path)
        while p:
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def key_pos(self, path: Path) -> Pos:
        """Position of the key of ``path`` (falls back to the value's position)."""
        if tuple(path) in self.keys:
            return self.keys[tuple(path)]
        return self.value_pos(path)


def _pos(node: Node) -> Pos:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def load_located(
    text: str, filename: str, limits: Limits = LIMITS
) -> tuple[Located | None, list[Diagnostic]]:
    """Parse one YAML document; never raises for bad input (problems become diagnostics)."""
    try:
        node = compose(text, limits)
    except LimitExceeded as exc:
        return None, [Diagnostic(filename, *exc.pos, exc.message, hint=exc.hint)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "malformed YAML"
        return None, [
            Diagnostic(
                filename,
                line,
                col,
                f"YAML syntax error: {problem}",
                hint="check indentation and that every 'key: value' has a space after ':'",
            )
        ]
    except yaml.YAMLError as exc:  # e.g. several documents, reader errors
        return None, [Diagnostic(filename, 1, 1, f"YAML error: {exc}")]
    except (ValueError, UnicodeError) as exc:
        return None, [Diagnostic(filename, 1, 1, f"unreadable text: {exc}")]
    if node is None:
        return None, [
            Diagnostic(filename, 1, 1, "the file is empty", hint="a recipe starts with 'recipe:'")
        ]
    walker = _Walker(filename, limits)
    try:
        data = walker.walk(node, (), 0)
    except LimitExceeded as exc:
        return None, [Diagnostic(filename, *exc.pos, exc.message, hint=exc.hint)]
    return walker.located(data), walker.diagnostics


class _Walker:
    def __init__(self, filename: str, limits: Limits) -> None:
        self.filename = filename
        self.limits = limits
        self.visited = 0
        self.constructor = SafeConstructor()
        self.diagnostics: list[Diagnostic] = []
        self.values: dict[Path, Pos] = {}
        self.keys: dict[Path, Pos] = {}
        self.styles: dict[Path, str | None] = {}
        self.active: set[int] = set()  # ids of nodes on the current walk (alias loops)

    def located(self, data: Any) -> Located:
        return Located(data, self.values, self.keys, self.styles)

    def error(self, pos: Pos, path: Path, message: str, hint: str = "") -> None:
        self.diagnostics.append(Diagnostic(self.filename, pos[0], pos[1], message, path, hint))

    def walk(self, node: Node, path: Path, depth: int) -> Any:
        self.visited += 1
        if self.visited > self.limits.nodes:
            raise LimitExceeded(
                f"the YAML expands to more than {self.limits.nodes} nodes (the limit)",
                _pos(node),
                "an alias counts its whole value each time it is used",
            )
        self.values.setdefault(path, _pos(node))
        if depth >= self.limits.depth:  # an alias can nest a deep value deeper
            self.error(
                _pos(node),
                path,
                f"the YAML is nested deeper than {self.limits.depth} levels (the limit)",
                _DEPTH_HINT,
            )
            return None
        if id(node) in self.active:
            self.error(_pos(node), path, "an alias refers to the mapping that contains it")
            return None
        if isinstance(node, ScalarNode):
            self.styles[path] = node.style or ""
            return self.scalar(node, path)
        if node.tag not in (_SEQ, _MAP):
            self.error(_pos(node), path, f"the YAML tag {node.tag!r} is not allowed here")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.walk(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self.mapping(node, path, depth)
        finally:
            self.active.discard(id(node))
        self.error(_pos(node), path, "unsupported YAML node")  # pragma: no cover
        return None

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError, OverflowError) as exc:
            self.error(_pos(node), path, f"cannot read value {node.value!r}: {exc}")
            return None

    def mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, Pos] = {}
        for key_node, value_node in node.value:
            kpos = _pos(key_node)
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.error(
                    kpos,
                    path,
                    "merge keys ('<<') are not allowed",
                    hint="write the keys out; a recipe must read the same to every tool",
                )
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(kpos, path, "a key must be a plain name, not a list or mapping")
                continue
            key = self.scalar(key_node, path)
            if not isinstance(key, str):
                self.error(
                    kpos,
                    path,
                    f"key {key_node.value!r} is not a name",
                    hint=f"quote it if you mean the text: '{key_node.value}'",
                )
                key = str(key_node.value)
            if key in seen:
                line, col = seen[key]
                self.error(
                    kpos,
                    (*path, key),
                    f"duplicate key '{key}' (first written at line {line}, column {col})",
                    hint="YAML would silently keep only the last one; remove or rename one",
                )
                continue
            seen[key] = kpos
            child = (*path, key)
            self.keys[child] = kpos
            out[key] = self.walk(value_node, child, depth + 1)
        return out
