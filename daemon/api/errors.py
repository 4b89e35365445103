"""The API's one mapping from a failure to an answer (decision 0060).

This module owns every error body the API sends: ``ErrorOut``, ``{"error", "field",
"detail", "errors"}``, where ``field`` names the part of the request at fault.

* ``EngineError`` (and ``CommandRefused``, ``UnknownBatch``): its status (409 with the
  ISA-88 table's reason, 404, 403, 422) and its field;
* ``LookupError`` raised by the recipe library: 404 on ``recipe`` (a ``KeyError`` or
  ``IndexError`` is a bug, not a lookup, and goes to the catch-all);
* a request that does not validate: 422 naming the first field, every problem listed;
* Starlette's own HTTP errors (no such route 404, method 405, body too large 413);
* anything else: a bug. ``_bug`` logs it with its traceback, counts it (``/health``
  shows the count, and the tests assert it stays 0) and answers 500; ``Quiet`` keeps
  uvicorn from logging it twice; the daemon goes on serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon.api.schemas import ErrorOut, FieldErrorOut
from daemon.batch.engine import EngineError

log = structlog.get_logger("cellfab.api")

CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "refused",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal",
}
_LOCATIONS: Final = ("body", "path", "query", "header", "cookie")


def error_response(
    status: int, detail: str, field: str = "", errors: Sequence[FieldErrorOut] = ()
) -> JSONResponse:
    body = ErrorOut(
        error=CODES.get(status, "error"), field=field, detail=detail, errors=list(errors)
    )
    return JSONResponse(body.model_dump(), status_code=status)


def field_of(loc: Sequence[Any]) -> str:
    """``("body", "params", "volume_ml")`` -> ``params.volume_ml``; ``("path",
    "batch_id")`` -> ``batch_id``; the whole body is ``body``."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


async def _engine_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngineError)
    return error_response(exc.status, str(exc), exc.field)


async def _lookup_error(request: Request, exc: Exception) -> JSONResponse:
    if type(exc) is not LookupError:  # KeyError, IndexError: a bug of ours
        return await _bug(request, exc)
    return error_response(404, str(exc), "recipe")


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldErrorOut(
            field="body" if e.get("type") == "json_invalid" else field_of(e.get("loc", ())),
            detail=_message(e),
        )
        for e in exc.errors()[:50]
    ]
    if not errors:
        return error_response(422, "invalid request", "")
    first = errors[0]
    return error_response(422, f"{first.field or 'body'}: {first.detail}", first.field, errors)


def _message(error: dict[str, Any]) -> str:
    msg = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":
        ctx = error.get("ctx") or {}
        msg = f"the body is not valid JSON ({ctx.get('error', 'parse error')})"
    return msg[:500]


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    field = {404: "path", 405: "method", 413: "body", 415: "body"}.get(exc.status_code, "")
    response = error_response(exc.status_code, str(exc.detail), field)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    """Any exception no other handler took (Starlette's ServerErrorMiddleware calls it,
    also when an answer had started, e.g. an event stream): a bug."""
    state = request.app.state
    state.internal_errors = getattr(state, "internal_errors", 0) + 1
    log.error(
        "request failed: a bug",
        method=request.method,
        path=request.url.path,
        exc_info=exc,
    )
    return error_response(500, "internal error (a bug in cellfab; the daemon log has it)")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.state.internal_errors = 0
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(LookupError, _lookup_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _bug)


class Quiet:
    """Wraps the app for the server: Starlette re-raises an exception after ``_bug``
    logged and answered it; this keeps it from uvicorn, which would log it again."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception:  # already logged, counted and answered by _bug
            if scope["type"] != "http":
                raise
