"""Settings of the OPC UA shuttle driver: timeouts, subscription sizes, reconnect backoff.

Owns ``OpcUaSettings`` and its checks (what the ICD allows, and what makes sense); the
backoff and the event buffer are the shared ones of ``drivers._link``.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers._link import DEFAULT_EVENT_LIMIT, Backoff


@dataclass(frozen=True, slots=True)
class OpcUaSettings:
    """Timeouts (wall seconds), reconnect backoff and subscription sizes."""

    request_timeout: float = 4.0
    connect_timeout: float = 15.0
    watchdog_interval: float = 1.0
    session_timeout: float = 60.0
    publishing_interval_ms: float = 100.0
    queue_size: int = 1000  # server queue of State/TaskId/CartridgeId/FaultCode/... items
    merged_queue_size: int = 10  # server queue of Progress/RemainingSeconds/ProcessValues
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    backoff_factor: float = 2.0
    jitter: float = 0.5  # each delay is drawn from [d * (1 - jitter), d]
    event_queue_limit: int = DEFAULT_EVENT_LIMIT
    max_in_flight: int = 8  # requests on the wire at once; more wait their turn, in order

    def __post_init__(self) -> None:
        for name in ("request_timeout", "connect_timeout", "watchdog_interval", "session_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not 100.0 <= self.publishing_interval_ms <= 1000.0:
            raise ValueError("publishing_interval_ms must be within the ICD's 100..1000 ms")
        if self.queue_size < 10 or self.merged_queue_size < 1:
            raise ValueError(
                "queue_size must be >= 10 (ICD 1.1: no transition merged), merged_queue_size >= 1"
            )
        self.backoff  # noqa: B018 - Backoff checks its own values
        if self.event_queue_limit < 16:
            raise ValueError("event_queue_limit must be >= 16")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.backoff_initial, self.backoff_max, self.backoff_factor, self.jitter)
