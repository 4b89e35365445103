"""Loading a site: bounded reading, YAML with positions, the model, then the file system.

This module owns ``load_site`` / ``load_site_text`` and ``SiteError``. Every problem
becomes a ``daemon.diagnostics.Diagnostic`` (file, line, column, field path, hint),
all of them, not only the first:

1. reading (``read_bounded``): regular files only (a FIFO or a device is refused from
   its ``stat``, without opening it), at most ``MAX_SITE_BYTES``, UTF-8;
2. YAML (``daemon.recipe.yaml.load_located``, the recipe language's reader: duplicate
   keys, merge keys and odd tags are errors), after two measures that keep its work
   bounded (``_too_complex``): nesting at most ``MAX_DEPTH`` levels, measured on the
   token stream (PyYAML's scanner slows down with every open level), and at most
   ``MAX_NODES`` nodes once aliases are expanded, so a small file of nested aliases
   is refused instead of expanded;
3. the model (``daemon.config.model.Site``, paths resolved against the site file's
   folder) and its rules, mapped by ``daemon.config.errors``;
4. the file system (``check_files``): every path the site names is checked for what
   its field says (``PathKind``): certificates and keys readable files, trust and
   revocation folders, recipe files or folders, the journal's folder existing or
   creatable. Serial devices and the API's socket folder are not checked: a USB
   adapter may be plugged in later, systemd creates ``/run/cellfab`` at start
   (decision 0057).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, SequenceNode

from daemon.config.errors import Problem, validation_diagnostics
from daemon.config.model import PATTERNS, PathKind, Site
from daemon.diagnostics import Diagnostic, PathPart, describe, format_all
from daemon.recipe.limits import MAX_DEPTH
from daemon.recipe.yaml import load_located

__all__ = [
    "MAX_NODES",
    "MAX_SITE_BYTES",
    "SiteError",
    "check_files",
    "load_site",
    "load_site_text",
    "read_bounded",
]

MAX_SITE_BYTES: Final = 256 * 1024  # a site of a hundred instruments is about 20 KiB
MAX_NODES: Final = 20_000  # YAML nodes after alias expansion (~15 per instrument)


class SiteError(Exception):
    """A site that does not load; ``diagnostics`` says every reason."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__(format_all(diagnostics) or "invalid site")


# --------------------------------------------------------------------------- reading
def read_bounded(path: str | Path, limit: int = MAX_SITE_BYTES) -> str:
    """The text of a regular file of at most ``limit`` bytes; else a SiteError.

    A path that is not a regular file is refused from its ``stat`` (never opened: a
    FIFO would block, a device might never end); the file is then opened without
    blocking and checked again, so one swapped in between is refused too.
    """
    name = str(path)

    def refuse(message: str, hint: str = "") -> SiteError:
        return SiteError([Diagnostic(name, 1, 1, message, hint=hint)])

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(f"not a regular file ({_kind(st.st_mode)})", "name a site.yaml file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise refuse(f"not a regular file ({_kind(st.st_mode)})")
            if st.st_size > limit:
                raise refuse(_too_big(st.st_size, limit))
            data = f.read(limit + 1)
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise refuse(_too_big(len(data), limit))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"the file is not UTF-8 text (byte {exc.start})") from exc


def _too_big(size: int, limit: int) -> str:
    return f"the file is {size} bytes; a site file may have at most {limit}"


def _kind(mode: int) -> str:
    for test, word in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return word
    return "not a file"


# --------------------------------------------------------------------------- loading
def load_site(path: str | Path) -> Site:
    """Load and check a site file; raises SiteError with every diagnostic."""
    text = read_bounded(path)
    site, diagnostics = load_site_text(text, str(path), base=Path(path).absolute().parent)
    if site is None:
        raise SiteError(diagnostics)
    return site


def load_site_text(
    text: str, filename: str = "<site>", *, base: Path | None = None, files: bool = True
) -> tuple[Site | None, list[Diagnostic]]:
    """Check site text. Returns ``(site, [])`` or ``(None, diagnostics)``; never raises
    (an internal error becomes a diagnostic that says so). Relative paths are taken
    from ``base`` (default: the folder of ``filename``); ``files=False`` skips the
    file system checks."""
    try:
        return _load(text, filename, base or Path(filename).absolute().parent, files)
    except Exception as exc:  # a bug of ours must not look like a crash to a site's author
        return None, [
            Diagnostic(
                filename,
                1,
                1,
                f"internal error while checking this site: {type(exc).__name__}: {exc}",
                hint="this is a bug in cellfab, not in the site; please report it",
            )
        ]


def _load(text: str, filename: str, base: Path, files: bool) -> tuple[Site | None, list[Any]]:
    if (refusal := _too_complex(text)) is not None:
        return None, [Diagnostic(filename, 1, 1, *refusal)]
    located, diagnostics = load_located(text, filename)
    if located is None or diagnostics:
        return None, _sorted(diagnostics)
    if not isinstance(located.data, dict):
        return None, [
            Diagnostic(
                filename,
                1,
                1,
                f"a site is a mapping of keys, this file holds {describe(located.data)}",
                hint="start with 'site: <name>', 'journal: <path>' and 'shuttles:'",
            )
        ]
    try:
        site = Site.model_validate(located.data, context={"base": base})
    except ValidationError as exc:
        return None, _sorted(validation_diagnostics(exc, located, filename, Site, PATTERNS))
    if files:
        problems = check_files(site)
        if problems:
            return None, _sorted(
                Diagnostic(filename, *located.value_pos(p.path), p.message, p.path, p.hint)
                for p in problems
            )
    return site, []


def _sorted(diagnostics: Any) -> list[Diagnostic]:
    return sorted(set(diagnostics), key=lambda d: (d.line, d.column, d.message))


def _too_complex(text: str) -> tuple[str, str] | None:
    """Why the text is refused before it is composed (message, hint), or None.

    PyYAML recurses once per nesting level and its scanner slows down with every open
    flow level, so nesting is measured first on the token stream, stopping at the
    limit; then the composed graph is measured with every alias expanded, in linear
    time, so a few hundred bytes of nested aliases are never expanded.
    """
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, _OPEN):
                depth += 1
                if depth > MAX_DEPTH:
                    return (
                        f"the YAML is nested deeper than {MAX_DEPTH} levels",
                        "a site is about 5 levels deep",
                    )
            elif isinstance(token, _CLOSE):
                depth -= 1
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, ValueError, UnicodeError, RecursionError):
        return None  # the reader reports it, with its position
    sizes: dict[int, int] = {}

    def size(node: Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 1  # an alias inside its own anchor counts once
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = node.value
            elif isinstance(node, MappingNode):
                children = [n for pair in node.value for n in pair]
            sizes[id(node)] = min(1 + sum(size(c) for c in children), MAX_NODES + 1)
        return sizes[id(node)]

    if root is not None and size(root) > MAX_NODES:
        return (
            f"the YAML expands to more than {MAX_NODES} nodes (aliases included)",
            "write each instrument out; a site needs no nested aliases",
        )
    return None


_OPEN: Final = (
    yaml.FlowSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.BlockMappingStartToken,
)
_CLOSE: Final = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)


# --------------------------------------------------------------------------- files
def check_files(site: BaseModel) -> list[Problem]:
    """Every path of ``site`` checked for what its field names (see ``PathKind``)."""
    return [
        problem
        for path, kind, value in _paths(site, ())
        if (problem := _check_path(path, kind, value)) is not None
    ]


def _paths(
    model: BaseModel, at: tuple[PathPart, ...]
) -> Iterator[tuple[tuple[PathPart, ...], str, Path]]:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        kinds = [m.kind for m in info.metadata if isinstance(m, PathKind)]
        kinds += [
            m.kind
            for arg in getattr(info.annotation, "__args__", ())
            for m in getattr(arg, "__metadata__", ())
            if isinstance(m, PathKind)
        ]
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            where = (*at, name, i) if isinstance(value, list) else (*at, name)
            if isinstance(item, BaseModel):
                yield from _paths(item, where)
            elif isinstance(item, Path) and kinds:
                yield where, kinds[0], item


def _check_path(path: tuple[PathPart, ...], kind: str, value: Path) -> Problem | None:
    shown = str(value)
    if kind == "journal":
        return _check_journal(path, value)
    if not value.exists():
        what = {"file": "file", "folder": "folder", "source": "recipe file or folder"}[kind]
        return Problem(path, f"the {what} {shown} does not exist")
    is_dir = value.is_dir()
    if kind == "file" and not value.is_file():
        return Problem(path, f"{shown} is not a file")
    if kind == "folder" and not is_dir:
        return Problem(path, f"{shown} is not a folder")
    if kind == "source" and not (is_dir or value.is_file()):
        return Problem(path, f"{shown} is neither a recipe file nor a folder")
    if not os.access(value, os.R_OK | (os.X_OK if is_dir else 0)):
        return Problem(path, f"{shown} is not readable by this user", "check its permissions")
    return None


def _check_journal(path: tuple[PathPart, ...], value: Path) -> Problem | None:
    if value.exists():
        if not value.is_file():
            return Problem(path, f"the journal {value} exists and is not a file")
        if not os.access(value, os.R_OK | os.W_OK):
            return Problem(path, f"the journal {value} is not writable by this user")
        return None
    folder = value.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return Problem(path, f"the journal's folder cannot be made: {folder} is not a folder")
    if folder != value.parent and not os.access(folder, os.W_OK | os.X_OK):
        return Problem(
            path,
            f"the journal's folder {value.parent} does not exist and cannot be made here "
            f"({folder} is not writable by this user)",
            "create the folder (systemd: StateDirectory=cellfab gives /var/lib/cellfab)",
        )
    if folder == value.parent and not os.access(folder, os.W_OK | os.X_OK):
        return Problem(path, f"the journal's folder {folder} is not writable by this user")
    return None
