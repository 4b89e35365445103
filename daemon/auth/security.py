"""Security events: what the alarms raise a security alarm on (decision 0080).

``SecurityEvent`` is published on the daemon's event bus as kind ``security``
(``EventBus.publish("security", event.as_bus())``) after its audit row is committed:

* ``account_locked``: the ``MAX_FAILED``-th failed sign-in (or signature password) in a
  row locked the account; only an admin unlocks it (audited);
* ``signin_failed``: a failed sign-in or signature password (``failed`` counts them);
* ``account_unlocked``: an admin unlocked it.

The alarms (``daemon.alarms.manager``) follow the bus's ``security`` events and raise
an ``account_locked`` alarm (high) for every ``account_locked``, back to normal once
``account_unlocked``; the audit trail already holds the facts (actions ``auth.locked``,
``auth.signin_failed``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

__all__ = ["BUS_KIND", "SecurityEvent"]

BUS_KIND: Final = "security"
Kind = Literal["account_locked", "signin_failed", "account_unlocked"]


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    kind: Kind
    user: str  # the user name tried (it may name no user)
    user_id: int | None
    failed: int  # failed attempts in a row after this event
    detail: str
    at: str  # UTC, ISO 8601

    def as_bus(self) -> dict[str, Any]:
        return asdict(self)
