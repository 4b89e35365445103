"""The recipe library of a site: the recipe files the daemon offers to start batches.

This module owns finding and loading them: every ``*.yaml``/``*.yml`` file of the
folders and files the site names (``site.recipes``), loaded with the recipe language's
loader (bounded, every problem a diagnostic). A file that does not load is listed with
its diagnostics, never hidden and never startable. The library is read again on every
request (``scan``), so a recipe added or fixed on disk is seen without a restart; a
batch pins the text it started with, so a later change of a file never reaches it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from daemon.diagnostics import Diagnostic
from daemon.recipe import Recipe, RecipeError, load_recipe


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    recipe: Recipe | None
    diagnostics: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True, slots=True)
class Library:
    entries: tuple[Entry, ...] = field(default_factory=tuple)

    def recipes(self) -> list[Recipe]:
        return [e.recipe for e in self.entries if e.recipe is not None]

    def find(self, name: str, version: str | None = None, sha256: str | None = None) -> Recipe:
        """The recipe called ``name`` (and ``version``, and with hash ``sha256`` when
        given); LookupError naming what the library has otherwise."""
        found = [r for r in self.recipes() if r.name == name]
        if version is not None:
            found = [r for r in found if r.version == version]
        if sha256 is not None:
            found = [r for r in found if r.hash == sha256]
        if not found:
            have = ", ".join(sorted({f"{r.name} {r.version}" for r in self.recipes()})) or "none"
            what = " ".join(
                [name, *([version] if version else []), *([f"sha256:{sha256}"] if sha256 else [])]
            )
            raise LookupError(f"no recipe {what} in the library (recipes: {have})")
        if len({r.hash for r in found}) > 1:
            versions = ", ".join(sorted(f"{r.version} in {r.filename}" for r in found))
            raise LookupError(
                f"recipe {name} is ambiguous ({versions}); name the version or the sha256"
            )
        return found[0]


def scan(sources: Iterable[str | Path]) -> Library:
    entries: list[Entry] = []
    for source in sources:
        p = Path(source)
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
        for f in files:
            try:
                entries.append(Entry(str(f), load_recipe(f)))
            except RecipeError as exc:
                entries.append(Entry(str(f), None, tuple(exc.diagnostics)))
    return Library(tuple(entries))
