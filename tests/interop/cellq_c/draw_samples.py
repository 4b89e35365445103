"""Draw Cell Q samples through a shuttle, written from the ICD 1.1 text alone (asyncua).

ICD 1.1 section 2: "A sample is known to the analyzer once a shuttle of its cell has drawn
it". A third party has no other way to make a sample known to the Cell Q of a
``cellfab sim``, so this script does what a cell would: it puts a cartridge at the
LoadPort (section 4 ``Twin.InsertCartridge``), moves it into an idle unit that lists the
``sample`` program, and runs ``sample`` once per SampleId (section 1). It prints the
drawn SampleIds, one a line. It imports nothing from cellfab: only asyncua, a library
that is not ours, and the names the ICD gives.

Usage: python draw_samples.py OPC_URL COUNT PREFIX
"""

from __future__ import annotations

import asyncio
import json
import sys

from asyncua import Client, Node

SHUTTLE_NS = "urn:cellfab:shuttle:v1"
TWIN_NS = "urn:cellfab:twin:v1"
HANG_GUARD = 60.0  # wall seconds: only a guard against a hang


async def _value(node: Node, ns: int, name: str) -> object:
    return await (await node.get_child(f"{ns}:{name}")).read_value()


async def _until(node: Node, ns: int, name: str, want: object) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while (value := await _value(node, ns, name)) != want:
            if value == "Faulted":
                raise RuntimeError(f"{name} is Faulted")
            await asyncio.sleep(0.02)


async def draw(url: str, count: int, prefix: str) -> list[str]:
    async with Client(url, timeout=10) as client:
        ns = await client.get_namespace_index(SHUTTLE_NS)
        tw = await client.get_namespace_index(TWIN_NS)
        shuttle = await client.nodes.objects.get_child(f"{ns}:Shuttle")
        twin = await client.nodes.objects.get_child(f"{tw}:Twin")
        transport = await shuttle.get_child(f"{ns}:Transport")
        unit: Node | None = None
        for candidate in await (await shuttle.get_child(f"{ns}:Units")).get_children():
            if (
                "sample" in await _value(candidate, ns, "Capabilities")
                and await _value(candidate, ns, "State") == "Idle"
                and await _value(candidate, ns, "CartridgeId") == ""
            ):
                unit = candidate
                break
        if unit is None:
            raise RuntimeError("no idle, empty unit that runs 'sample'")
        unit_id = (await unit.read_browse_name()).Name
        cartridge = f"{prefix}C"
        await twin.call_method(f"{tw}:InsertCartridge", cartridge, 2e8, 92.0)
        await transport.call_method(f"{ns}:Move", cartridge, unit_id, f"{prefix}/move/1")
        await _until(unit, ns, "CartridgeId", cartridge)
        await _until(transport, ns, "State", "Idle")
        drawn = []
        for i in range(count):
            sample_id = f"{prefix}S{i}"
            task = f"{prefix}/sample/{i}"
            params = json.dumps({"volume_ml": 0.1, "sample_id": sample_id})
            await unit.call_method(f"{ns}:StartProgram", "sample", params, task, cartridge)
            async with asyncio.timeout(HANG_GUARD):
                while True:
                    status, _ = await unit.call_method(f"{ns}:GetResult", task)
                    if status == "Complete":
                        break
                    if status not in ("Running", "Held"):
                        raise RuntimeError(f"sample {sample_id}: {status}")
                    await asyncio.sleep(0.02)
            drawn.append(sample_id)
        return drawn


def main() -> None:
    url, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    for sample_id in asyncio.run(draw(url, count, prefix)):
        print(sample_id)


if __name__ == "__main__":
    main()
