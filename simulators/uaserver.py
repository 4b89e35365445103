"""What the shuttle twin needs from asyncua's server beyond its defaults (asyncua 2.1.0,
pinned exactly; the hooks below reach into its internals on purpose).

Owns three things:

* write protection (ICD 1.1 section 4: "no client may add or delete nodes or write any
  other variable, whatever identity it presents"). asyncua's default user manager makes
  any client that presents the user name ``admin`` (any password) an Admin, and Admins
  write any attribute of any node and manage nodes. ``TwinUsers`` makes every identity a
  plain user, and ``TwinPermissions`` allows the services of a plain user and never the
  node-management ones (AddNodes, DeleteNodes, AddReferences, DeleteReferences,
  RegisterServer), for every role. A plain user's Write then reaches only Value
  attributes whose AccessLevel and UserAccessLevel allow it: the twin sets that on
  ``Twin/TimeScale`` alone.
* ``report_queue_overflow(server)``: asyncua drops the oldest notification of a full
  monitored-item queue silently. OPC UA Part 4 (5.12.1.5, 7.7.1) and ICD 1.1 say the
  server sets the Overflow info bit on the value that is then the oldest in the queue,
  so a client knows changes were lost. Every subscription the server creates gets an
  enqueue that does so (DiscardOldest; asyncua ignores DiscardOldest=False, and so do
  the twins: ICD clients ask for DiscardOldest).
* ``check_writes(server, checks)``: a write that a check refuses gets its status code in
  its own place of the Write response (OPC UA Part 4, 5.10.4: one StatusCode per
  WriteValue). asyncua only lets a value setter raise, which fails the whole service
  request instead; a third-party client (tests/interop) saw the difference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from asyncua import Server, ua
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole

# StatusCode InfoBits (Part 4, 7.39.1): InfoType DataValue (bit 10) + Overflow (bit 7).
OVERFLOW_BITS: Final = 0x0400 | 0x0080


class TwinUsers:
    """Every identity (anonymous, any user name and password, any certificate) is a plain
    user: nobody is an Admin of a twin."""

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User:
        return User(role=UserRole.User, name=username)


class TwinPermissions(PermissionRuleset):
    """The services of a plain user, whatever the role; node management for nobody."""

    def __init__(self) -> None:
        self._allowed = frozenset(ua.NodeId(t) for t in USER_TYPES)

    def check_validity(self, user: Any, action_type_id: ua.NodeId, body: Any) -> bool:
        return action_type_id in self._allowed


def _with_overflow(note: ua.MonitoredItemNotification) -> ua.MonitoredItemNotification:
    dv = note.Value
    code = dv.StatusCode.value if dv.StatusCode is not None else 0
    flagged = dataclasses.replace(dv, StatusCode=ua.StatusCode(code | OVERFLOW_BITS))
    return ua.MonitoredItemNotification(ClientHandle=note.ClientHandle, Value=flagged)


def _overflow_reporting_enqueue(isub: Any) -> Any:
    """An ``enqueue_datachange_event`` for one InternalSubscription that flags overflow."""

    async def enqueue(mid: int, note: ua.MonitoredItemNotification, size: int) -> None:
        queue: dict[int, list[ua.MonitoredItemNotification]] = isub._triggered_datachanges
        if mid not in queue:
            queue[mid] = [note]
            await isub._trigger_publish()
            return
        items = queue[mid]
        items.append(note)
        if size > 1 and len(items) > size:
            del items[: len(items) - size]
            items[0] = _with_overflow(items[0])  # never the shared DataValue itself
        elif size == 1 and len(items) > 1:
            del items[:-1]  # a queue of one keeps the newest, without the bit (Part 4)

    return enqueue


def report_queue_overflow(server: Server) -> None:
    """Make every subscription of ``server`` flag a monitored-item queue overflow."""
    service = server.iserver.subscription_service
    create = service.create_subscription

    async def create_subscription(
        params: ua.CreateSubscriptionParameters,
        callback: Any,
        session_id: ua.NodeId,
        request_callback: Any = None,
    ) -> ua.CreateSubscriptionResult:
        result = await create(params, callback, session_id, request_callback)
        isub = service.subscriptions[result.SubscriptionId]
        isub.enqueue_datachange_event = _overflow_reporting_enqueue(isub)
        return result

    service.create_subscription = create_subscription  # type: ignore[method-assign]


WriteCheck = Callable[[ua.DataValue], "ua.StatusCode | None"]


def check_writes(server: Server, checks: dict[ua.NodeId, WriteCheck]) -> None:
    """Run ``checks[node](value)`` before a Value write to ``node``; a status code it
    returns answers that write alone, and nothing is written."""
    service = server.iserver.attribute_service
    write = service.write

    async def checked_write(params: ua.WriteParameters, user: Any = None) -> list[ua.StatusCode]:
        results: list[ua.StatusCode | None] = []
        passed: list[ua.WriteValue] = []
        for wv in params.NodesToWrite:
            check = checks.get(wv.NodeId) if wv.AttributeId == ua.AttributeIds.Value else None
            refused = check(wv.Value) if check is not None else None
            results.append(refused)
            if refused is None:
                passed.append(wv)
        done = iter(
            await write(ua.WriteParameters(NodesToWrite=passed), user=user) if passed else []
        )
        return [r if r is not None else next(done) for r in results]

    service.write = checked_write
