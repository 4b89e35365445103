"""The heap of a long-running process: what it built before it was ready is frozen out
of the cyclic garbage collector's full scans (decision 0108).

A full collection stops every thread of the process while it walks every tracked object
(about 0.7 us each, measured on the 2-core test machine). The drivers, the API, the
recipes and, in ``cellfab demo`` and the tests, an asyncua twin's address space (some
400 000 objects) are built at start and live as long as the process; walking them again
at each full collection stopped the tests' process for 1-2 s, which at a simulated site's
time scale (20 000) is 5-10 process hours: a step timed out whose work had not started.
``gc.freeze`` is CPython's tool for such objects: they are left out of later collections,
reference counting still frees them, and whatever is allocated afterwards is collected as
before.

The process's entry points call ``freeze_built`` (``cellfab run`` and ``cellfab demo``
once ready; the tests after each session fixture), not ``serve``: the heap belongs to a
process, and the tests run many daemons in one.
"""

from __future__ import annotations

import gc


def freeze_built() -> int:
    """Collect what is garbage now, freeze the rest; the number of frozen objects."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
