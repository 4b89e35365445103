"""Who may do what through the API: the one place a role check belongs.

This module owns ``authorize``, a dependency the app puts on every route
(``FastAPI(dependencies=[Depends(authorize)])``), and ``ACTIONS``, the action each route
performs (a test holds that every route has one). Today nobody signs in: the principal
is ``ANONYMOUS`` and every action is allowed, while a request still says who it is in
its body (``by``, ``role``), which the journal records. The control-plane issue (#11)
replaces the body of ``authorize``: read the token, find the user's roles, refuse with
``EngineError(..., status=401 or 403)`` (the error handler names the field), so no route
changes.

An action is a dotted name; a command's action names the command
(``batch.command.abort``), because operators and supervisors may issue different ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fastapi import Request

# route name (the endpoint function's name) -> action
ACTIONS: Final[dict[str, str]] = {
    "health": "read",
    "list_batches": "read",
    "show_batch": "read",
    "batch_records": "read",
    "start_batch": "batch.start",
    "command_batch": "batch.command.{command}",
    "confirm_step": "batch.confirm",
    "list_recipes": "read",
    "show_recipe": "read",
    "validate_recipe": "recipe.validate",
    "instruments": "read",
    "queue": "read",
    "events": "read",
    "metrics": "read",  # any signed-in role, as every read: decision 0092
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as, and the roles they hold."""

    name: str
    roles: frozenset[str]
    authenticated: bool = False


ANONYMOUS: Final = Principal("anonymous", frozenset({"operator", "supervisor", "qa"}))


def action_of(request: Request) -> str:
    route = request.scope.get("route")
    name = getattr(route, "name", "")
    template = ACTIONS.get(name)
    if template is None:
        # a route without an action is a bug: refuse rather than allow by default
        raise RuntimeError(f"route {name!r} has no action in daemon.api.access.ACTIONS")
    return template.format(**request.path_params)


async def authorize(request: Request) -> Principal:
    """The principal of ``request`` once it may perform the route's action."""
    request.state.action = action_of(request)
    principal = ANONYMOUS  # until sign-in exists (issue #11)
    request.state.principal = principal
    return principal
