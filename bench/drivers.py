"""Driver benchmarks in one run: ``python -m bench.drivers`` (``make bench``).

Runs ``bench.opcua`` (OPC UA driver vs raw asyncua, notification intake) and
``bench.modbus`` (Modbus driver vs raw pymodbus) one after the other against twins on
loopback and prints every line they return. Each figure is a ratio to the raw library
call measured in the same run on the same machine, never an absolute number to compare
with another machine or run, and nothing here passes or fails: the targets of issue #3
are printed beside the ratios, for a person to read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import time

from bench import modbus, opcua

HEADER = (
    "cellfab driver benchmarks: ratios to the raw protocol libraries measured in this same "
    "run (same machine, same twins); targets are shown, never asserted: no pass/fail"
)


async def run(echo: bool = False) -> list[str]:
    """Every line of both benchmarks; ``echo`` prints each section as soon as it is done."""
    t0 = time.perf_counter()
    lines: list[str] = []

    def add(section: list[str]) -> None:
        lines.extend(section)
        if echo:
            print("\n".join(section), flush=True)

    add(
        [
            HEADER,
            f"python {platform.python_version()}, {os.cpu_count()} CPU(s), load average at "
            f"start {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the "
            "machine moves the numbers)",
            "",
        ]
    )
    add([*await opcua.run(), ""])
    add([*await modbus.run(), ""])
    add([f"bench took {time.perf_counter() - t0:.0f} s"])
    return lines


def main() -> None:
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # its None-security chatter
    asyncio.run(run(echo=True))


if __name__ == "__main__":
    main()
