"""Recipes: the site's library (list, show) and validation of a posted text.

The library is read from disk on every request (``daemon.library``), in a worker
thread; validation runs the recipe loader on the posted text (bounded by the loader's
limits, in a worker thread) and answers its diagnostics; nothing posted is ever kept
or added to the library.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query

from daemon.api import views
from daemon.api.routes import Api
from daemon.api.schemas import (
    NAME_MAX,
    ErrorOut,
    RecipeDetail,
    RecipeEntry,
    ValidateIn,
    ValidateOut,
)
from daemon.recipe import load_recipe_text

router = APIRouter(prefix="/recipes", tags=["recipes"])


@router.get("", name="list_recipes")
async def list_recipes(api: Api) -> list[RecipeEntry]:
    """Every recipe file of the library: name, version, approval, hash, file; or the
    diagnostics of a file that does not load (it cannot start batches)."""
    library = await anyio.to_thread.run_sync(api.library)
    return [views.library_entry(e) for e in library.entries]


@router.post(
    "/validate",
    name="validate_recipe",
    description="The body may be up to daemon.api.schemas.RECIPE_BODY_MAX bytes.",
)
async def validate_recipe(body: ValidateIn) -> ValidateOut:
    """Check a recipe text as the library would load it; its diagnostics, or its
    name, version and hash. Nothing is kept."""
    recipe, diagnostics = await anyio.to_thread.run_sync(load_recipe_text, body.text, body.filename)
    if recipe is None:
        return ValidateOut(valid=False, diagnostics=[views.diagnostic(d) for d in diagnostics])
    return ValidateOut(
        valid=True, name=recipe.name, version=recipe.version, sha256=recipe.hash, diagnostics=[]
    )


@router.get("/{name}", name="show_recipe", responses={404: {"model": ErrorOut}})
async def show_recipe(
    name: Annotated[str, Path(max_length=NAME_MAX)],
    api: Api,
    version: Annotated[str | None, Query(max_length=NAME_MAX)] = None,
    sha256: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
) -> RecipeDetail:
    """One library recipe: header, parameters (types, units, ranges), steps."""
    library = await anyio.to_thread.run_sync(api.library)
    return views.recipe_detail(library.find(name, version, sha256))
