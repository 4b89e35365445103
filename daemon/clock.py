"""The daemon's process clock: wall time scaled by the site's time scale.

This module owns one fact: how the daemon measures process time. Recipes say their
durations and timeouts in process time (a 48 h expansion); a site runs at time scale 1
on real instruments, or at the same scale as the twins it drives in a simulation
(``cellfab sim --time-scale N``), so a 9-day process runs in seconds.

Process time is ``time.time() * scale``: it continues across daemon restarts (records
carry it as ``pt``), so a wait step or a timeout survives a kill -9. A wall clock
step (NTP) moves it too; durations of steps are short against such steps on a
production edge PC running chrony, and a step back never makes a wait end early by
more than the step.
"""

from __future__ import annotations

import math
import time

import anyio


class ProcessClock:
    def __init__(self, scale: float = 1.0) -> None:
        if not (math.isfinite(scale) and 1e-3 <= scale <= 1e7):
            raise ValueError(f"time scale must be a finite number in 0.001..1e7, got {scale!r}")
        self.scale = scale

    def wall(self) -> float:
        """UTC wall time, epoch seconds."""
        return time.time()

    def now(self) -> float:
        """Process time, seconds."""
        return time.time() * self.scale

    def wall_seconds(self, process_seconds: float) -> float:
        """How long ``process_seconds`` of process time take on the wall."""
        return max(0.0, process_seconds) / self.scale

    async def sleep_until(self, pt: float) -> None:
        """Sleep until process time ``pt`` (at once when it has passed)."""
        # one sleep normally; a second when the wall clock was stepped back meanwhile
        for _ in range(1000):
            left = pt - self.now()
            if left <= 0:
                return
            await anyio.sleep(self.wall_seconds(left))
