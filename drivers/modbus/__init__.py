"""Modbus driver of the Cell Q QC analyzer (ICD section 2), over TCP or RTU.

The package, one owner per module:

* ``endpoints``: ``TcpEndpoint``, ``RtuEndpoint`` (ICD 1.1 line settings, checked) and
  ``ModbusSettings``;
* ``registers``: what is written and what is read, checked against the ICD (pure);
* ``wire``: the connection, one typed request at a time, the poll loop with the
  heartbeat watchdog and the events of what changed (the ``_link.Wire``);
* ``analyzer``: ``ModbusAnalyzer``, the ``drivers.base.Analyzer``: submit (the
  one-write-one-read fast path), abort and release (read before a repeat), queries.

TCP and RTU share all register code; only the pymodbus client differs. A caller never
sees a pymodbus exception: every outcome is an ``InstrumentError`` of drivers/base.py.
"""

from drivers.modbus.analyzer import ModbusAnalyzer
from drivers.modbus.endpoints import ModbusSettings, RtuEndpoint, TcpEndpoint

__all__ = ["ModbusAnalyzer", "ModbusSettings", "RtuEndpoint", "TcpEndpoint"]
