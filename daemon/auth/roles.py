"""Roles and the actions they grant: the access table of the control plane.

Every API route performs one action (``daemon.api.access.ACTIONS`` maps route names to
actions); ``ACTION_ROLES`` says who may perform each:

* ``PUBLIC``: anyone, signed in or not (sign-in itself, the health probe);
* ``SIGNED_IN``: any user with any role (reading the cell's state, sign-out);
* otherwise the roles listed: a user may hold several roles, and a role grants only
  the actions listed for it (an admin is not implicitly QA, a QA is not an operator).

The roles of issue #11: operator (start, hold, restart, pause, resume, confirm operator
prompts), supervisor (also stop, abort, reset, shelve alarms, confirm supervisor
prompts), qa (approve and retire recipes, release batches, confirm QA prompts, read the
audit trail), admin (users only, and the audit trail). A confirm prompt names its role;
``batch.confirm`` lets the three roles in, and the prompt's role must be one the user
holds. Submitting a recipe: supervisor or qa (whoever submits cannot approve).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = [
    "ACTION_ROLES",
    "PUBLIC",
    "ROLES",
    "SIGNED_IN",
    "allowed",
    "needed",
]

ROLES: Final = ("operator", "supervisor", "qa", "admin")
PUBLIC: Final = frozenset({"*public*"})
SIGNED_IN: Final = frozenset({"*signed-in*"})

_OPERATE: Final = frozenset({"operator", "supervisor"})
_SUPERVISE: Final = frozenset({"supervisor"})
_QA: Final = frozenset({"qa"})
_ADMIN: Final = frozenset({"admin"})

ACTION_ROLES: Final[dict[str, frozenset[str]]] = {
    "health": PUBLIC,
    "auth.login": PUBLIC,
    "auth.logout": SIGNED_IN,
    "auth.whoami": SIGNED_IN,
    "auth.password": SIGNED_IN,  # one's own password (the old one re-entered)
    "read": SIGNED_IN,
    "recipe.validate": SIGNED_IN,
    "batch.start": _OPERATE,
    "batch.command.start": _OPERATE,
    "batch.command.hold": _OPERATE,
    "batch.command.restart": _OPERATE,
    "batch.command.pause": _OPERATE,
    "batch.command.resume": _OPERATE,
    "batch.command.stop": _SUPERVISE,
    "batch.command.abort": _SUPERVISE,
    "batch.command.reset": _SUPERVISE,
    "batch.confirm": frozenset({"operator", "supervisor", "qa"}),
    "batch.release": _QA,
    "alarm.ack": _OPERATE,  # for the alarms (issue #11): acknowledging is operating
    "alarm.shelve": _SUPERVISE,
    "recipe.submit": frozenset({"supervisor", "qa"}),
    "recipe.approve": _QA,
    "recipe.retire": _QA,
    "audit.read": frozenset({"qa", "admin"}),
    "user.list": _ADMIN,
    "user.add": _ADMIN,
    "user.disable": _ADMIN,
    "user.enable": _ADMIN,
    "user.passwd": _ADMIN,
    "user.unlock": _ADMIN,
    "user.roles": _ADMIN,
}


def needed(action: str) -> frozenset[str]:
    """The roles that grant ``action``; KeyError for an action nobody declared (the
    caller refuses: fail closed)."""
    return ACTION_ROLES[action]


def allowed(roles: Iterable[str], action: str) -> bool:
    want = needed(action)
    if want is PUBLIC or want is SIGNED_IN:
        return True
    return bool(want & set(roles))
