"""Loading a recipe: a file or a text in, a ``Recipe`` or every diagnostic out.

This module owns the entry points (``load_recipe``, ``load_recipe_text``) and
``RecipeError``. ``load_recipe_text`` never raises: a bug of ours while checking
becomes a diagnostic that says so, never a traceback an author must read.
"""

from __future__ import annotations

from pathlib import Path

from daemon.diagnostics import Diagnostic, format_all
from daemon.recipe.check import check_text
from daemon.recipe.hash import canonical_hash
from daemon.recipe.value import Recipe


class RecipeError(Exception):
    """A recipe that does not validate; ``diagnostics`` says every reason."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__(format_all(diagnostics) or "invalid recipe")


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe file; raises RecipeError with every diagnostic."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([Diagnostic(str(path), 1, 1, f"cannot read the file: {exc}")]) from exc
    recipe, diagnostics = load_recipe_text(text, str(path))
    if recipe is None:
        raise RecipeError(diagnostics)
    return recipe


def load_recipe_text(
    text: str, filename: str = "<recipe>"
) -> tuple[Recipe | None, list[Diagnostic]]:
    """Validate recipe text. Returns ``(recipe, [])`` or ``(None, diagnostics)``; never
    raises (an internal error becomes a diagnostic that says so)."""
    try:
        checked, diagnostics = check_text(text, filename)
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
