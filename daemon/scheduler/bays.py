"""Bays and their scarcity: which unit a cartridge should go to, or park in.

Pure functions over the cell view; this module owns the two rules the scheduler
applies to units:

* scarcity of a unit: the highest 1/n over its capabilities, where n is how many
  usable units of the shuttle offer that capability. SEL1 (the only cell_selection
  unit) is 1.0; an incubator among sixteen is 1/16. A cartridge waits or parks in the
  least scarce free bay, so scarce units stay free for the programs only they run.
* a parking bay for a cartridge that must leave a bay: free, empty, usable, and no
  scarcer than the bay it leaves ("park it in a free bay that offers no scarcer
  capability").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from daemon.cell import UnitView
from drivers import icd

# A unit in these states cannot take a cartridge or run a program until someone acts.
UNUSABLE_STATES = frozenset({icd.UnitState.FAULTED, icd.UnitState.ABORTED})


def usable(u: UnitView) -> bool:
    return not u.out_of_service and u.state not in UNUSABLE_STATES


def scarcity(units: Iterable[UnitView]) -> dict[str, float]:
    units = [u for u in units if usable(u)]
    offered = Counter(cap for u in units for cap in u.capabilities)
    return {u.unit: max((1.0 / offered[c] for c in u.capabilities), default=0.0) for u in units}


def least_scarce(candidates: Iterable[UnitView], scarce: dict[str, float]) -> UnitView | None:
    """The candidate with the lowest scarcity (ties: by name, so choices are stable)."""
    ranked = sorted(candidates, key=lambda u: (scarce.get(u.unit, 1.0), u.unit))
    return ranked[0] if ranked else None


def parking_bay(
    units: Iterable[UnitView],
    leaving: str,
    is_free: Callable[[UnitView], bool],
    scarce: dict[str, float],
) -> UnitView | None:
    """Where a cartridge leaving ``leaving`` may park, or None."""
    limit = scarce.get(leaving, 1.0)
    options = [
        u
        for u in units
        if u.unit != leaving and usable(u) and is_free(u) and scarce.get(u.unit, 1.0) <= limit
    ]
    return least_scarce(options, scarce)
