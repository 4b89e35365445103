"""Who may do what through the API: the one place a role check belongs (decision 0080).

This module owns ``authorize``, a dependency the app puts on every route
(``FastAPI(dependencies=[Depends(authorize)])``), and ``ACTIONS``, the action each route
performs (a test holds that every route has one). ``authorize``:

1. finds the route's action (``ACTIONS``; a route without one, or an action without
   roles in ``daemon.auth.roles.ACTION_ROLES``, is refused: fail closed, 500 counted);
2. a public action (sign-in, health) goes on without a user;
3. reads the bearer token (``Authorization: Bearer ...``) and finds its session in the
   daemon's ``Directory``: none, unknown, revoked, expired, or a disabled or locked user
   -> 401 (``WWW-Authenticate: Bearer``);
4. a user none of whose roles grants the action -> 403 naming the roles needed.

Routes get the signed-in user as ``SignedIn`` (a ``Session``); ``acting_role`` is the
role the user acts in for an action (recorded in the journal and the audit trail).
An action is a dotted name; a command's action names the command
(``batch.command.abort``), because operators and supervisors may issue different ones.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Request

from daemon.audit.errors import RequestRefused
from daemon.auth.directory import Session
from daemon.auth.roles import PUBLIC, ROLES, SIGNED_IN, allowed, needed

# route name (the endpoint function's name) -> action
ACTIONS: Final[dict[str, str]] = {
    "health": "health",
    "login": "auth.login",
    "logout": "auth.logout",
    "whoami": "auth.whoami",
    "change_password": "auth.password",
    "list_batches": "read",
    "show_batch": "read",
    "batch_records": "read",
    "batch_signatures": "read",
    "batch_record": "read",
    "start_batch": "batch.start",
    "command_batch": "batch.command.{command}",
    "confirm_step": "batch.confirm",
    "release_batch": "batch.release",
    "list_recipes": "read",
    "show_recipe": "read",
    "validate_recipe": "recipe.validate",
    "submit_recipe": "recipe.submit",
    "approve_recipe": "recipe.approve",
    "retire_recipe": "recipe.retire",
    "instruments": "read",
    "queue": "read",
    "events": "read",
    "audit_rows": "audit.read",
    "list_alarms": "read",
    "show_alarm": "read",
    "ack_alarm": "alarm.ack",
    "shelve_alarm": "alarm.shelve",
    "list_users": "user.list",
    "add_user": "user.add",
    "disable_user": "user.disable",
    "enable_user": "user.enable",
    "unlock_user": "user.unlock",
    "reset_password": "user.passwd",
    "set_roles": "user.roles",
    "metrics": "read",  # any signed-in role, as every read: decision 0092
}


def template_of(request: Request) -> str:
    route = request.scope.get("route")
    name = getattr(route, "name", "")
    template = ACTIONS.get(name)
    if template is None:
        # a route without an action is a bug: refuse rather than allow by default
        raise RuntimeError(f"route {name!r} has no action in daemon.api.access.ACTIONS")
    return template


def action_of(request: Request) -> str:
    return template_of(request).format(**request.path_params)


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise RequestRefused("not signed in: cellfab login", "authorization", 401)
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestRefused("the Authorization header is not 'Bearer TOKEN'", "authorization", 401)
    return token.strip()


async def authorize(request: Request) -> Session | None:
    """The session of ``request`` once it may perform the route's action (None for a
    public action)."""
    template = template_of(request)
    action = template.format(**request.path_params)
    request.state.action = action
    request.state.session = None
    try:
        want = needed(action)
    except KeyError:
        if "{" not in template:
            raise RuntimeError(f"action {action!r} has no roles in ACTION_ROLES") from None
        # a path parameter names no action (an unknown command): signed-in users learn
        # that it is unknown (422, as the route's own validation would say)
        request.app.state.daemon.directory.authenticate(bearer(request))
        param = template[template.index("{") + 1 : template.index("}")]
        raise RequestRefused(
            f"{param} {request.path_params.get(param)!r} is not one this API knows",
            param,
            422,
        ) from None
    if want is PUBLIC:
        return None
    session = request.app.state.daemon.directory.authenticate(bearer(request))
    if not allowed(session.roles, action):
        holds = ", ".join(sorted(session.roles)) or "no role"
        raise RequestRefused(
            f"{action} needs the {' or '.join(_ordered(want))} role ({session.name} holds {holds})",
            "authorization",
            403,
        )
    request.state.session = session
    return session


def signed_in(request: Request) -> Session:
    session = getattr(request.state, "session", None)
    if session is None:  # a public route asked for a user: a bug in the route
        raise RuntimeError("this route is public and has no signed-in user")
    return session  # type: ignore[no-any-return]


SignedIn = Annotated[Session, Depends(signed_in)]


def acting_role(session: Session, action: str) -> str:
    """The role ``session`` acts in for ``action`` (the first granting role it holds)."""
    want = needed(action)
    if want is SIGNED_IN or want is PUBLIC:
        return ""
    return next((r for r in _ordered(want) if r in session.roles), "")


def _ordered(roles: frozenset[str]) -> list[str]:
    return [r for r in ROLES if r in roles]
