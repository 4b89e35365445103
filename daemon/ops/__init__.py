"""Operations: what an operator's tools see of a running daemon.

* ``daemon.ops.metrics``: the Prometheus metrics served at ``GET /metrics``;
* ``daemon.ops.notify``: systemd's notifications (READY, STATUS, STOPPING) and the
  watchdog pings;
* ``daemon.ops.heap``: what a process built before it was ready, frozen out of the
  garbage collector's full scans.

Logging is configured by ``daemon.cli.logs``; the unit file is ``systemd/cellfab.service``.
"""
