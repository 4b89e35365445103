"""The audit trail through the API (QA and admin): rows in order, filtered by batch or
object, each signature checked against the database as it is read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from daemon.api import views
from daemon.api.routes import Api
from daemon.api.schemas_control import AuditRowOut

router = APIRouter(tags=["audit"])
Short = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.get("/audit", name="audit_rows")
async def audit_rows(
    api: Api,
    batch: Short = None,
    object_type: Short = None,
    object_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="Rows after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> list[AuditRowOut]:
    """Who did what to which object, when and why, with signatures."""
    return await views.audit_rows(
        api.trail,
        batch_id=batch,
        object_type=object_type,
        object_id=object_id,
        after=after,
        limit=limit,
    )
