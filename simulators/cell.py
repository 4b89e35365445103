"""One simulated manufacturing cell: the three twins on one world and one clock.

`cellfab sim` runs a SimCell in the foreground; tests, benchmarks and the demo start one
on a BackgroundLoop. The twins only share the World (the physical and biological truth)
and the Clock (the time scale); each speaks its own protocol exactly as ICD.md says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simulators.balance import BalanceTwin
from simulators.cellq import CellQTwin
from simulators.clock import Clock
from simulators.shuttle import ShuttleTwin
from simulators.world import World


class SimStartError(RuntimeError):
    """A twin could not start (its port taken, no pseudo-terminal, ...)."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    host: str = "127.0.0.1"
    shuttle_port: int = 0
    cellq_port: int = 0
    time_scale: float = 1.0
    seed: int = 0
    security: Literal["none", "secure", "both"] = "none"
    cert_dir: Path | None = None


class SimCell:
    """World + clock + shuttle (OPC UA) + Cell Q (Modbus TCP) + balance (serial pty)."""

    def __init__(self, config: SimConfig = SimConfig()) -> None:
        self.config = config
        self.clock = Clock(config.time_scale)
        self.world = World(config.seed)
        cert_dir = config.cert_dir
        self.shuttle = ShuttleTwin(
            self.world,
            self.clock,
            host=config.host,
            port=config.shuttle_port,
            security=config.security,
            cert_dir=cert_dir,
            trusted_clients_dir=(cert_dir / "trusted") if cert_dir else None,
        )
        self.cellq = CellQTwin(self.world, self.clock, host=config.host, port=config.cellq_port)
        self.balance = BalanceTwin(self.world)

    async def start(self) -> None:
        """Start the three twins; a twin that cannot start stops the others first."""
        c = self.config
        twins = (
            (self.shuttle, f"shuttle twin on {c.host}:{c.shuttle_port}"),
            (self.cellq, f"Cell Q twin on {c.host}:{c.cellq_port}"),
            (self.balance, "balance twin on a pseudo-terminal"),
        )
        for twin, what in twins:
            try:
                await twin.start()
            except (OSError, RuntimeError) as exc:
                await self.stop()
                raise SimStartError(f"{what} could not start: {exc}") from exc

    async def stop(self) -> None:
        for twin in (self.balance, self.cellq, self.shuttle):
            with contextlib.suppress(Exception):
                await twin.stop()

    async def __aenter__(self) -> SimCell:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def endpoints(self) -> dict[str, str]:
        return {
            "shuttle": self.shuttle.url,
            "cellq": f"{self.config.host}:{self.cellq.port}",
            "balance": self.balance.port_path,
        }


async def serve(config: SimConfig, stop: asyncio.Event) -> None:
    """Run a SimCell until ``stop`` is set; print its endpoints once it listens."""
    async with SimCell(config) as cell:
        print(f"cellfab sim: time scale {config.time_scale:g}, seed {config.seed}")
        for name, endpoint in cell.endpoints().items():
            print(f"  {name:8} {endpoint}")
        if config.security != "none":
            print(f"  server certificate {cell.shuttle.server_certificate_path}")
        print("Ctrl-C or SIGTERM stops.", flush=True)
        await stop.wait()
    print("cellfab sim: stopped", flush=True)


def run_sim(args: argparse.Namespace) -> int:
    config = SimConfig(
        host=args.host,
        shuttle_port=args.shuttle_port,
        cellq_port=args.cellq_port,
        time_scale=args.time_scale,
        seed=args.seed,
        security=args.security,
        cert_dir=Path(args.cert_dir),
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    try:
        asyncio.run(main())
    except SimStartError as exc:
        print(f"cellfab sim: error: {exc}", file=sys.stderr)
        return 1
    return 0
