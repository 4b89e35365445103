"""``GET /metrics``: the daemon's Prometheus metrics (``daemon.ops.metrics``).

Behind the same role check as every route (action ``read``: any signed-in role; see
decision 0092): the numbers name no patient, but they are the plant's state, and one
rule for every route leaves nothing to forget. A scraper sends a bearer token.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from daemon.api.routes import Api
from daemon.ops.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    name="metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format",
            "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(api: Api) -> Response:
    """Batches by state, steps, step durations, driver reconnects, alarms, journal
    commit latency, process figures. On the event loop: it reads the engine's state."""
    return Response(api.metrics.render(), media_type=CONTENT_TYPE)
