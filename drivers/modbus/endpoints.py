"""Where a Cell Q is and how the Modbus driver treats it: endpoints and settings.

This module owns ``TcpEndpoint`` (host:port, ICD default port 5020), ``RtuEndpoint``
(a serial device; ICD 1.1: 19200 baud, 8 data bits, no parity, 1 stop bit unless the
site configures otherwise, checked by ``icd.SerialLine``) and ``ModbusSettings``
(timeouts, poll interval, heartbeat watchdog, reconnect backoff). Each refuses a
nonsensical value at construction with a ``ValueError`` that names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from drivers import icd


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    """Modbus TCP: ``host:port`` (ICD default port 5020)."""

    host: str
    port: int = icd.DEFAULT_CELLQ_PORT

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("a Modbus TCP endpoint needs a host")
        if isinstance(self.port, bool) or not 0 < self.port < 65536:
            raise ValueError(f"Modbus TCP port {self.port!r} is outside 1..65535")

    @classmethod
    def parse(cls, address: str) -> TcpEndpoint:
        """``"host:port"`` or ``"host"`` (as in CELLFAB_CELLQ_ADDR)."""
        host, sep, port = address.rpartition(":")
        if not sep:
            return cls(address)
        if not port.isdigit() or not host:
            raise ValueError(f"{address!r} is not host:port")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RtuEndpoint:
    """Modbus RTU on a serial device, 19200 8N1 unless configured otherwise."""

    device: str
    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1

    def __post_init__(self) -> None:
        if not self.device:
            raise ValueError("a Modbus RTU endpoint needs a serial device")
        try:
            self.line  # noqa: B018 (validates the settings)
        except ValueError as exc:
            raise ValueError(f"Modbus RTU endpoint {self.device}: {exc}") from None

    @property
    def line(self) -> icd.SerialLine:
        return icd.SerialLine(self.baudrate, self.bytesize, self.parity, self.stopbits)

    def __str__(self) -> str:
        return f"rtu:{self.device} ({self.line})"


@dataclass(frozen=True, slots=True)
class ModbusSettings:
    """Tuning of one driver; every time is wall seconds (the instrument's clock)."""

    device_id: int = icd.CELLQ_DEVICE_ID
    timeout: float = 1.0  # per request: no answer in this long is InstrumentTimeout
    poll_interval: float = 0.25
    heartbeat_timeout: float = 5.0  # heartbeat not moving this long = lost
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    connect_timeout: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.device_id, bool) or not 1 <= self.device_id <= 247:
            raise ValueError(f"Modbus device id {self.device_id!r} is outside 1..247")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "device_id" and not (math.isfinite(value) and value > 0):
                raise ValueError(f"ModbusSettings.{f.name} must be a positive number")
        if self.backoff_initial > self.backoff_max:
            raise ValueError("ModbusSettings.backoff_initial is above backoff_max")
