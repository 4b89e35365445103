"""The resync diff of the OPC UA shuttle driver: a pure function.

After a loss the driver reconnects, reads the full state and must tell consumers what
changed while they were blind, in one burst before ``ConnectionRestored``: no stale
event, no replay of old transitions, nothing missed. ``diff_events(source, before,
after)`` is that burst: ``before`` is the cache as consumers last saw it (taken when the
link was lost), ``after`` the cache once the new subscription and the Read agree. One
event per group of variables that differs (a unit's state/TaskId/Program, its
cartridge, its fault, its progress, its process values; the transport's state or fault;
the LoadPort; the OutputPort), each showing the current values, in key order.

With nothing seen before (the first connect) there is nothing to bring up to date.
Crash recovery rests on the same rule: what a consumer saw, the instrument now, and
exactly the differences between them.
"""

from __future__ import annotations

from drivers.base import Event
from drivers.opcua.values import Values, event_of, group_of, pv_index

_MISSING = object()


def diff_events(source: str, before: Values, after: Values) -> list[Event]:
    """Events that bring a consumer who saw ``before`` to ``after``."""
    if not before:
        return []
    groups = dict.fromkeys(
        group_of(key) for key in sorted(after) if before.get(key, _MISSING) != after[key]
    )
    pvs = pv_index(after)
    return [event_of(source, after, loc, group, pvs) for loc, group in groups]
