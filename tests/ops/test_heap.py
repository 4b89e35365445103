"""``daemon.ops.heap.freeze_built``: what exists when it is called leaves the collector's
scans; cyclic garbage made afterwards is still collected."""

from __future__ import annotations

import gc
import weakref

from daemon.ops.heap import freeze_built


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector can free it


def test_what_exists_is_frozen_and_later_garbage_is_still_collected() -> None:
    built = _Node()
    # more than a bare interpreter's; not compared with gc.get_freeze_count() after the
    # call: other threads' loops (twins, daemons) free frozen objects meanwhile
    assert freeze_built() > 10_000
    assert not any(o is built for o in gc.get_objects())  # left out of every scan

    later = _Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None
