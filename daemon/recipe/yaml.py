"""YAML with positions: plain data plus the exact line and column of every key and value.

This module owns reading an author's YAML text into plain Python data (dicts, lists,
scalars) together with a position table keyed by path, and the detection of what
PyYAML would silently accept: duplicate keys (PyYAML keeps the last one), non-string
keys and merge keys. It uses PyYAML's ``compose`` node tree, whose marks give the
position of every node; scalars are built by PyYAML's own SafeConstructor, so the
values are exactly what ``yaml.safe_load`` would produce.

Positions are 1-based (line, column). Nothing here knows what a recipe is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from daemon.diagnostics import Diagnostic, PathPart

Path = tuple[PathPart, ...]
Pos = tuple[int, int]

_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
MAX_DEPTH = 64  # deeper documents are refused, not walked (a recipe is ~6 levels deep)


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


def load_located(text: str, filename: str) -> tuple[Located | None, list[Diagnostic]]:
    """Parse one YAML document; never raises for bad input (problems become diagnostics)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
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
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        return None, [
            Diagnostic(
                filename, 1, 1, "the YAML is nested too deeply", hint="a recipe is ~6 levels deep"
            )
        ]
    if node is None:
        return None, [
            Diagnostic(filename, 1, 1, "the file is empty", hint="a recipe starts with 'recipe:'")
        ]
    walker = _Walker(filename)
    data = walker.walk(node, (), 0)
    return walker.located(data), walker.diagnostics


class _Walker:
    def __init__(self, filename: str) -> None:
        self.filename = filename
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
        self.values.setdefault(path, _pos(node))
        if depth > MAX_DEPTH:
            self.error(_pos(node), path, f"nesting deeper than {MAX_DEPTH} levels")
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
