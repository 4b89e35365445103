"""Loading a recipe: a file or a text in, a ``Recipe`` or every diagnostic out.

This module owns the entry points (``load_recipe``, ``load_recipe_text``),
``RecipeError`` and reading a recipe file within the limits (``daemon.recipe.limits``):
only a regular file is read (a FIFO or a device is refused after a ``stat``, before
any read, and opened non-blocking so a FIFO cannot stall the open), and never more
than the size limit plus one byte, even when the file grows or lies about its size.
``load_recipe_text`` never raises: a bug of ours while checking becomes a diagnostic
that says so, never a traceback an author must read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from daemon.diagnostics import Diagnostic, format_all
from daemon.recipe.check import check_text
from daemon.recipe.hash import canonical_hash
from daemon.recipe.limits import LIMITS, Limits, kib
from daemon.recipe.value import Recipe

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class RecipeError(Exception):
    """A recipe that does not validate; ``diagnostics`` says every reason."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__(format_all(diagnostics) or "invalid recipe")


def load_recipe(path: str | Path, limits: Limits = LIMITS) -> Recipe:
    """Load and validate a recipe file; raises RecipeError with every diagnostic."""
    text = read_recipe_file(path, limits)
    recipe, diagnostics = load_recipe_text(text, str(path), limits)
    if recipe is None:
        raise RecipeError(diagnostics)
    return recipe


def read_recipe_file(path: str | Path, limits: Limits = LIMITS) -> str:
    """The text of a recipe file: a regular file of at most ``limits.file_bytes`` bytes
    of UTF-8. Raises RecipeError saying why not."""
    name = str(path)

    def refuse(message: str, hint: str = "") -> RecipeError:
        return RecipeError([Diagnostic(name, 1, 1, message, hint=hint)])

    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            kind = _KINDS.get(stat.S_IFMT(before.st_mode), "not a file")
            raise refuse(f"'{name}' is not a regular file ({kind})", "only regular files are read")
        if before.st_size > limits.file_bytes:
            raise refuse(_too_large("the file", before.st_size, limits))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            now = os.fstat(f.fileno())
            if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
                before.st_dev,
                before.st_ino,
            ):
                raise refuse(f"'{name}' changed while it was opened", "load it again")
            data = f.read(limits.file_bytes + 1)
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc}") from exc
    if len(data) > limits.file_bytes:
        raise refuse(_too_large("the file", None, limits))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"cannot read the file: {exc}", "save the recipe as UTF-8") from exc


def load_recipe_text(
    text: str, filename: str = "<recipe>", limits: Limits = LIMITS
) -> tuple[Recipe | None, list[Diagnostic]]:
    """Validate recipe text. Returns ``(recipe, [])`` or ``(None, diagnostics)``; never
    raises (an internal error becomes a diagnostic that says so)."""
    try:
        if len(text) * 4 > limits.file_bytes:  # a character is at most 4 bytes
            size = len(text.encode("utf-8", "surrogatepass"))
        else:
            size = 0
        if size > limits.file_bytes:
            return None, [Diagnostic(filename, 1, 1, _too_large("the recipe text", size, limits))]
        checked, diagnostics = check_text(text, filename, limits)
        if checked is None:
            return None, diagnostics
        digest = canonical_hash(checked.doc)
    except Exception as exc:  # a bug of ours must not look like a crash to an author
        return None, [
            Diagnostic(
                filename,
                1,
                1,
                f"internal error while checking this recipe: {type(exc).__name__}: {exc}",
                hint="this is a bug in cellfab, not in the recipe; please report it",
            )
        ]
    recipe = Recipe(
        doc=checked.doc,
        hash=digest,
        filename=filename,
        guards=checked.guards,
        variables=checked.variables,
        param_uses=checked.param_uses,
    )
    return recipe, []


def _too_large(what: str, size: int | None, limits: Limits) -> str:
    shown = f" ({size} bytes)" if size is not None else ""
    return f"{what}{shown} is larger than the limit of {kib(limits.file_bytes)}"
