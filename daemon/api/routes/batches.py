"""Batches: list, show, start, ISA-88 commands, confirm, release, records, signatures,
and the electronic batch record (``daemon.record``: HTML, or PDF with ``format=pdf``).

Every answer about a batch is read from the engine's ``Batch`` values (the journal's
view); every change goes through the engine (``create``, ``command``, ``confirm``),
which journals it with its audit row. A refused command is journaled by the engine and
answered 409 with the ISA-88 table's reason (``daemon.api.errors``).

Who acts is the signed-in user (``daemon.api.access``), in the role that grants the
action. Stop, Abort, a confirmation whose prompt role is qa, and QA's release are
electronically signed: the body's ``password`` is checked first (``Directory.signer``),
then the change commits with its signature (``daemon.audit.batches``).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import anyio
from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import HTMLResponse

from daemon.api import views
from daemon.api.access import SignedIn, acting_role
from daemon.api.routes import Api, signing_of
from daemon.api.schemas import (
    BatchDetail,
    BatchSummary,
    CommandIn,
    CommandName,
    ConfirmIn,
    ErrorOut,
    RecordOut,
    ReleaseIn,
    StartIn,
)
from daemon.api.schemas_control import AuditRowOut
from daemon.audit.batches import SIGNED_COMMANDS, SIGNED_CONFIRM_ROLES, started_by
from daemon.audit.entries import Act
from daemon.audit.errors import RequestRefused
from daemon.batch.machine import Batch
from daemon.batch.states import BatchState
from daemon.record import PdfUnavailable, RecordError, gather, html, pdf
from daemon.supervisor import Daemon

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


def detail(api: Daemon, batch: Batch) -> BatchDetail:
    return views.batch_detail(
        batch, api.engine.recipes.get(batch.recipe_hash), api.auditor.released.get(batch.batch_id)
    )


@router.post("", name="start_batch", status_code=201, responses=_E)
async def start_batch(body: StartIn, api: Api, who: SignedIn, response: Response) -> BatchDetail:
    """Create a batch on a library recipe (by name, and version or sha256 when more
    than one matches) and Start it; it waits for its cartridge at a LoadPort. The
    recipe must be approved (by hash) unless the site allows unapproved recipes."""
    library = await anyio.to_thread.run_sync(api.library)
    recipe = library.find(body.recipe, body.version, body.sha256)
    role = acting_role(who, "batch.start")
    batch = await api.engine.create(
        recipe,
        dict(body.params),
        body.cartridge_id,
        priority=body.priority,
        shuttle=body.shuttle,
        by=who.name,
        act=Act(who.actor(role), body.reason),
    )
    response.headers["Location"] = f"/batches/{batch.batch_id}"
    return detail(api, batch)


@router.get("/{batch_id}", name="show_batch", responses={404: _E[404]})
async def show_batch(batch_id: BatchId, api: Api) -> BatchDetail:
    """Parameters, variables, step and visit, task, jobs, deviations, the prompt (and
    role) it waits for, and its release."""
    return detail(api, api.engine.batch(batch_id))


@router.post("/{batch_id}/commands/{command}", name="command_batch", responses=_E)
async def command_batch(
    batch_id: BatchId,
    command: Annotated[CommandName, Path(description="An ISA-88 command")],
    body: CommandIn,
    api: Api,
    who: SignedIn,
) -> BatchDetail:
    """Issue an ISA-88 command; 409 with the reason when the state does not allow it
    (the refusal is journaled too). Stop and abort need ``password`` (a signature)."""
    api.engine.batch(batch_id)
    name = command.capitalize()
    role = acting_role(who, f"batch.command.{command}")
    meaning = SIGNED_COMMANDS.get(name)
    signing = await signing_of(api, who, body.password, meaning) if meaning else None
    batch = await api.engine.command(
        batch_id,
        name,
        by=who.name,
        role=role,
        reason=body.reason,
        act=Act(who.actor(role), body.reason, signing),
    )
    return detail(api, batch)


@router.post(
    "/{batch_id}/confirm",
    name="confirm_step",
    responses={**_E, 403: {"model": ErrorOut, "description": "Another role must confirm"}},
)
async def confirm_step(batch_id: BatchId, body: ConfirmIn, api: Api, who: SignedIn) -> BatchDetail:
    """Answer the confirm prompt the batch waits at, in the prompt's role (which the
    user must hold); a qa prompt needs ``password`` (a signature)."""
    batch = api.engine.batch(batch_id)
    recipe = api.engine.recipes.get(batch.recipe_hash)
    role = acting_role(who, "batch.confirm")
    if recipe is not None and body.step in recipe.steps and recipe.kind(body.step) == "confirm":
        role = recipe.steps[body.step].role
        if role not in who.roles:
            raise RequestRefused(
                f"step {body.step} needs a confirmation by the {role} role "
                f"({who.name} holds {', '.join(sorted(who.roles))})",
                "role",
                403,
            )
    signing = None
    if role in SIGNED_CONFIRM_ROLES:
        signing = await signing_of(api, who, body.password, "confirmed")
    batch = await api.engine.confirm(
        batch_id,
        body.step,
        by=who.name,
        role=role,
        note=body.reason,
        act=Act(who.actor(role), body.reason, signing),
    )
    return detail(api, batch)


@router.post(
    "/{batch_id}/release",
    name="release_batch",
    responses={**_E, 403: {"model": ErrorOut, "description": "Two-person rule, or password"}},
)
async def release_batch(batch_id: BatchId, body: ReleaseIn, api: Api, who: SignedIn) -> BatchDetail:
    """QA releases a Complete batch's product: e-signed (meaning released), and not by
    anyone who started the batch (two-person rule, 403)."""
    batch = api.engine.batch(batch_id)
    pairs = await anyio.to_thread.run_sync(api.journal.batch_records, batch_id)
    starters = started_by(batch_id, [rec for _, rec in pairs])
    api.auditor.check_release(batch, starters, who.name)
    signing = await signing_of(api, who, body.password, "released")
    role = acting_role(who, "batch.release")
    await api.auditor.release(batch, starters, Act(who.actor(role), body.reason, signing))
    return detail(api, api.engine.batch(batch_id))


@router.get("/{batch_id}/signatures", name="batch_signatures", responses={404: _E[404]})
async def batch_signatures(batch_id: BatchId, api: Api) -> list[AuditRowOut]:
    """The batch's audit rows that carry an electronic signature, each checked."""
    api.engine.batch(batch_id)
    return await views.audit_rows(api.trail, batch_id=batch_id, signed=True)


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


@router.get(
    "/{batch_id}/record",
    name="batch_record",
    responses={
        200: {
            "description": "The record: one HTML page, or PDF",
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        404: _E[404],
        409: {"model": ErrorOut, "description": "PDF asked of a daemon that cannot make it"},
    },
)
async def batch_record(
    batch_id: BatchId,
    api: Api,
    format: Annotated[Literal["html", "pdf"], Query(description="html (default) or pdf")] = "html",
) -> Response:
    """The electronic batch record: chain of identity, recipe and its approval,
    parameters, every step and task, QC results against their limits, deviations,
    commands, signatures (each verified) and the audit extract, with a timeline; one
    self-contained HTML page, or PDF."""
    api.engine.batch(batch_id)
    try:
        record = await anyio.to_thread.run_sync(gather, api.journal.path, batch_id)
    except RecordError as exc:  # records that do not replay: a damaged journal, said as such
        raise RequestRefused(f"no batch record: {exc}", "batch_id", 409) from None
    if format == "pdf":
        try:
            document = await anyio.to_thread.run_sync(pdf, record)
        except PdfUnavailable as exc:
            raise RequestRefused(str(exc), "format", 409) from None
        return Response(document, media_type="application/pdf")
    return HTMLResponse(await anyio.to_thread.run_sync(html, record))
