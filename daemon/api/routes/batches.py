"""Batches: list, show, start, ISA-88 commands, confirm, journal records.

Every answer about a batch is read from the engine's ``Batch`` values (the journal's
view); every change goes through the engine (``create``, ``command``, ``confirm``),
which journals it. A refused command is journaled by the engine and answered 409 with
the ISA-88 table's reason (``daemon.api.errors``).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import anyio
from fastapi import APIRouter, Path, Query, Response

from daemon.api import views
from daemon.api.routes import Api
from daemon.api.schemas import (
    BatchDetail,
    BatchSummary,
    CommandIn,
    CommandName,
    ConfirmIn,
    ErrorOut,
    RecordOut,
    StartIn,
)
from daemon.batch.states import BatchState

router = APIRouter(prefix="/batches", tags=["batches"])

BatchId = Annotated[str, Path(min_length=1, max_length=32, description="e.g. B0007-K3Q")]
_E: Final[dict[int | str, dict[str, Any]]] = {
    404: {"model": ErrorOut, "description": "No such batch"},
    409: {"model": ErrorOut, "description": "Refused in the batch's state (ISA-88 table)"},
}


@router.get("", name="list_batches")
async def list_batches(
    api: Api,
    state: Annotated[list[BatchState] | None, Query(max_length=12)] = None,
) -> list[BatchSummary]:
    """Every batch (in creation order), or those in the given states."""
    wanted = set(state or ())
    return [
        views.batch_summary(b, api.engine.recipes.get(b.recipe_hash))
        for b in list(api.engine.batches.values())
        if not wanted or b.state in wanted
    ]


@router.post("", name="start_batch", status_code=201, responses=_E)
async def start_batch(body: StartIn, api: Api, response: Response) -> BatchDetail:
    """Create a batch on a library recipe (by name, and version or sha256 when more
    than one matches) and Start it; it waits for its cartridge at a LoadPort."""
    library = await anyio.to_thread.run_sync(api.library)
    recipe = library.find(body.recipe, body.version, body.sha256)
    batch = await api.engine.create(
        recipe,
        dict(body.params),
        body.cartridge_id,
        priority=body.priority,
        shuttle=body.shuttle,
        by=body.by,
    )
    response.headers["Location"] = f"/batches/{batch.batch_id}"
    return views.batch_detail(batch, recipe)


@router.get("/{batch_id}", name="show_batch", responses={404: _E[404]})
async def show_batch(batch_id: BatchId, api: Api) -> BatchDetail:
    """Parameters, variables, step and visit, task, jobs, deviations, and the prompt
    (and role) it waits for."""
    batch = api.engine.batch(batch_id)
    return views.batch_detail(batch, api.engine.recipes.get(batch.recipe_hash))


@router.post("/{batch_id}/commands/{command}", name="command_batch", responses=_E)
async def command_batch(
    batch_id: BatchId,
    command: Annotated[CommandName, Path(description="An ISA-88 command")],
    body: CommandIn,
    api: Api,
) -> BatchDetail:
    """Issue an ISA-88 command; 409 with the reason when the state does not allow it
    (the refusal is journaled too)."""
    batch = await api.engine.command(
        batch_id, command.capitalize(), by=body.by, role=body.role or "", reason=body.reason
    )
    return views.batch_detail(batch, api.engine.recipes.get(batch.recipe_hash))


@router.post(
    "/{batch_id}/confirm",
    name="confirm_step",
    responses={**_E, 403: {"model": ErrorOut, "description": "Another role must confirm"}},
)
async def confirm_step(batch_id: BatchId, body: ConfirmIn, api: Api) -> BatchDetail:
    """Answer the confirm prompt the batch waits at (step and role must match)."""
    batch = await api.engine.confirm(
        batch_id, body.step, by=body.by, role=body.role, note=body.note
    )
    return views.batch_detail(batch, api.engine.recipes.get(batch.recipe_hash))


@router.get("/{batch_id}/records", name="batch_records", responses={404: _E[404]})
async def batch_records(
    batch_id: BatchId,
    api: Api,
    after: Annotated[int, Query(ge=0, le=2**62, description="Records after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> list[RecordOut]:
    """The batch's journal records in order (its whole history, as written)."""
    api.engine.batch(batch_id)
    pairs = await anyio.to_thread.run_sync(api.journal.batch_records, batch_id)
    return [views.record(seq, rec) for seq, rec in pairs if seq > after][:limit]
