"""The one process clock shared by every twin of a process.

Process time runs ``scale`` process seconds per wall second. Changing the scale
rebases the clock so process time never jumps. Twins step their models on
``now()`` differences, so a scale change applies at once to every duration.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Monotonic process clock; thread-safe (tests poke it from another thread)."""

    def __init__(self, scale: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._scale = self._check(scale)
        self._wall0 = time.monotonic()
        self._proc0 = 0.0

    @staticmethod
    def _check(scale: float) -> float:
        scale = float(scale)
        if not (scale > 0 and scale < 1e9):
            raise ValueError(f"time scale must be > 0 and < 1e9, got {scale!r}")
        return scale

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, scale: float) -> None:
        scale = self._check(scale)
        with self._lock:
            wall = time.monotonic()
            self._proc0 += (wall - self._wall0) * self._scale
            self._wall0 = wall
            self._scale = scale

    def now(self) -> float:
        """Process seconds since the clock was made."""
        with self._lock:
            return self._proc0 + (time.monotonic() - self._wall0) * self._scale

    def wall_seconds(self, process_seconds: float) -> float:
        """Wall seconds that ``process_seconds`` take at the current scale."""
        return process_seconds / self._scale
