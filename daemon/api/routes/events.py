"""The event stream: ``GET /events`` as server-sent events (``daemon.api.events``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints
from starlette.background import BackgroundTask

from daemon.api import events as ev
from daemon.api.routes import Api
from daemon.api.schemas import ErrorOut

router = APIRouter(tags=["events"])

Kind = Literal[ev.KINDS]  # type: ignore[valid-type]
BatchIdText = Annotated[str, StringConstraints(min_length=1, max_length=32)]


@router.get(
    "/events",
    name="events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream: one event per bus event (event: kind, id: "
            'bus seq, data: {"seq", "kind", "at", "data", "batch_id"}), keep-alive comments',
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        404: {"model": ErrorOut, "description": "No such batch"},
    },
)
async def events(
    request: Request,
    api: Api,
    kind: Annotated[list[Kind] | None, Query(max_length=len(ev.KINDS))] = None,
    batch: Annotated[list[BatchIdText] | None, Query(max_length=100)] = None,
) -> StreamingResponse:
    """Batch, step, instrument and deviation events as they happen, filtered by kind
    and by batch id; ``overflow`` when this reader fell behind (re-read the state)."""
    batch_ids = set(batch or ())
    for batch_id in batch_ids:
        api.engine.batch(batch_id)  # 404 for a batch that does not exist
    streams: ev.Streams = request.app.state.streams
    sub = streams.open(kind or ())
    return StreamingResponse(
        ev.frames(streams, sub, api.engine, batch_ids, ev.KEEPALIVE_S),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(streams.close, sub),
    )
