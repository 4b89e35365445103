"""The FastAPI application of one daemon: routes, error handling, limits, the role check.

Routes: auth (sign-in), users, batches, recipes and their lifecycle, instruments,
events, audit, alarms.

``create_app(daemon)`` is the only way an app is made: the daemon in ``app.state``,
the error handlers (``daemon.api.errors``), ``authorize`` on every route
(``daemon.api.access``), a body limit on every request (``BodyLimit``), and the event
streams' registry. ``/openapi.json`` describes it all; the interactive documentation
pages are off (they load scripts from the internet, which a factory network does not
reach).

The body limit is ours, not FastAPI's ``max_body_size``: that one answers in plain text
and replaces any other answer to an oversized request, and every answer of this API is
an ``ErrorOut`` naming the field (decision 0060).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import Depends, FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon.api import errors
from daemon.api.access import authorize
from daemon.api.events import Streams
from daemon.api.routes import (
    alarms,
    audit,
    auth,
    batches,
    events,
    instruments,
    metrics,
    recipes,
    recipes_lifecycle,
    users,
)
from daemon.api.schemas import BODY_MAX, RECIPE_BODY_MAX, ErrorOut
from daemon.supervisor import Daemon

API_VERSION: Final = "1.0"
BODY_LIMITS: Final = {  # path -> bytes; else BODY_MAX
    "/recipes/validate": RECIPE_BODY_MAX,
    "/recipes/submit": RECIPE_BODY_MAX,
}
ERRORS: Final[dict[int | str, dict[str, Any]]] = {  # what any route may answer
    401: {"model": ErrorOut, "description": "Not signed in (no, unknown or expired token)"},
    403: {"model": ErrorOut, "description": "The user's roles do not grant this action"},
    413: {"model": ErrorOut, "description": "The body is larger than the route accepts"},
    422: {"model": ErrorOut, "description": "A field of the request is invalid"},
    500: {"model": ErrorOut, "description": "A bug (logged; the daemon goes on)"},
}


def create_app(daemon: Daemon) -> FastAPI:
    app = FastAPI(
        title="cellfab",
        summary="Control API of one cellfab daemon: batches, recipes, instruments, events",
        version=API_VERSION,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(authorize)],
        generate_unique_id_function=lambda route: route.name,  # operationId = route name
    )
    app.state.daemon = daemon
    app.state.streams = Streams(daemon.bus)
    errors.install(app)
    app.add_middleware(BodyLimit, default=BODY_MAX, limits=BODY_LIMITS)
    # recipes_lifecycle before recipes: /recipes/submit is not the recipe called "submit"
    for module in (
        auth,
        users,
        batches,
        recipes_lifecycle,
        recipes,
        instruments,
        events,
        audit,
        alarms,
        metrics,
    ):
        app.include_router(module.router, responses=ERRORS)
    return app


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """Refuse a request body over the path's limit: at once when its Content-Length
    says so, else when the bytes read pass it (413, field ``body``)."""

    def __init__(self, app: ASGIApp, default: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            exc = BodyTooLarge(limit)
            response = errors.error_response(413, str(exc.detail), "body")
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
