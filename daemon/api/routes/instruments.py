"""Instruments and health: the cell view's state, the scheduler's queue, liveness."""

from __future__ import annotations

from fastapi import APIRouter, Request

from daemon.api import views
from daemon.api.routes import Api
from daemon.api.schemas import HealthOut, InstrumentsOut, QueueOut

router = APIRouter(tags=["instruments"])


@router.get("/instruments", name="instruments")
async def instruments(api: Api) -> InstrumentsOut:
    """Every shuttle (units: state, task, program, cartridge, progress, faults; ports;
    transport) and analyzer (state, free slots, jobs), and each link's state."""
    return views.instruments(api.cell.snapshot())


@router.get("/instruments/queue", name="queue")
async def queue(api: Api) -> QueueOut:
    """The scheduler: requests waiting for a resource, and what is reserved."""
    return QueueOut.model_validate(api.engine.scheduler.snapshot())


@router.get("/health", name="health")
async def health(api: Api, request: Request) -> HealthOut:
    """200 once the API serves: the site, how many batches, each instrument's link."""
    links = views.instruments(api.cell.snapshot()).links
    return HealthOut(
        status="serving",
        site=api.site.site,
        batches=len(api.engine.batches),
        instruments=links,
        internal_errors=request.app.state.internal_errors,
    )
