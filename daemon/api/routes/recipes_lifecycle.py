"""The recipe lifecycle through the API: submit a text, approve or retire a hash.

``POST /recipes/submit`` loads the posted text as the library would (diagnostics: 422
naming ``text``) and records its hash as submitted by the signed-in user;
``POST /recipes/{sha256}/approve`` and ``.../retire`` are QA's, electronically signed
(``password``), and approval needs someone other than the submitter
(``daemon.lifecycle``). Every answer is the lifecycle row written.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path

from daemon.api.access import SignedIn, acting_role
from daemon.api.routes import Api, signing_of
from daemon.api.schemas import ErrorOut
from daemon.api.schemas_control import LifecycleOut, SignIn, SubmitIn
from daemon.audit.entries import Act
from daemon.audit.errors import RequestRefused
from daemon.lifecycle import LifecycleRow
from daemon.recipe import load_recipe_text

router = APIRouter(prefix="/recipes", tags=["recipes"])
Sha = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The recipe's sha256")]
_E = {
    403: {"model": ErrorOut, "description": "Not QA, the two-person rule, or the password"},
    404: {"model": ErrorOut, "description": "No such submitted recipe"},
    409: {"model": ErrorOut, "description": "Not in a status this change follows"},
}


def _out(row: LifecycleRow) -> LifecycleOut:
    return LifecycleOut(
        seq=row.seq,
        recipe_hash=row.recipe_hash,
        recipe_name=row.recipe_name,
        recipe_version=row.recipe_version,
        status=row.status,
        user_name=row.user_name,
        at=row.at,
        reason=row.reason,
    )


@router.post("/submit", name="submit_recipe", responses=_E)
async def submit_recipe(body: SubmitIn, api: Api, who: SignedIn) -> LifecycleOut:
    """Submit a recipe text for approval (its hash; the text is kept with it)."""
    recipe, diagnostics = await anyio.to_thread.run_sync(load_recipe_text, body.text, body.filename)
    if recipe is None:
        first = diagnostics[0].format() if diagnostics else "it does not load"
        raise RequestRefused(f"the recipe does not load: {first}", "text", 422)
    act = Act(who.actor(acting_role(who, "recipe.submit")), body.reason)
    return _out(await api.lifecycle.submit(recipe, act))


@router.post("/{sha256}/approve", name="approve_recipe", responses=_E)
async def approve_recipe(sha256: Sha, body: SignIn, api: Api, who: SignedIn) -> LifecycleOut:
    """QA approves a submitted recipe (e-signed; not by its submitter)."""
    return _out(await _signed(api, who, sha256, body, "approved"))


@router.post("/{sha256}/retire", name="retire_recipe", responses=_E)
async def retire_recipe(sha256: Sha, body: SignIn, api: Api, who: SignedIn) -> LifecycleOut:
    """QA retires a submitted or approved recipe (e-signed): no new batch starts on it."""
    return _out(await _signed(api, who, sha256, body, "retired"))


async def _signed(api: Api, who: SignedIn, sha256: str, body: SignIn, meaning: str) -> LifecycleRow:
    status = api.lifecycle.status(sha256)
    if status == "draft":
        raise RequestRefused(f"no recipe with hash {sha256} was submitted", "sha256", 404)
    signing = await signing_of(api, who, body.password, meaning)
    verb = "recipe.approve" if meaning == "approved" else "recipe.retire"
    act = Act(who.actor(acting_role(who, verb)), body.reason, signing)
    if meaning == "approved":
        return await api.lifecycle.approve(sha256, act)
    return await api.lifecycle.retire(sha256, act)
