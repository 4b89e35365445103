"""Address-space discovery of the OPC UA shuttle driver (ICD section 1).

Owns finding every node the driver uses and the list of variables it follows. Nothing
is hard-coded but the ICD's namespace URI and browse names: the namespace index is
resolved at run time (NamespaceArray), every node is found by
TranslateBrowsePathsToNodeIds from Objects, the units by browsing
Objects/Shuttle/Units, each unit's process values by browsing its ProcessValues object.
A server that lacks a node of the ICD is refused with an ``InstrumentError`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from asyncua import Client, ua

from drivers import icd
from drivers.base import InstrumentError
from drivers.icd import BrowseName as BN
from drivers.opcua.errors import check_status

_HIERARCHICAL: Final = ua.NodeId(ua.ObjectIds.HierarchicalReferences)

# Variables followed by subscription, per unit and for the transport.
UNIT_VARS: Final = (
    BN.STATE,
    BN.CARTRIDGE_ID,
    BN.TASK_ID,
    BN.PROGRAM,
    BN.PROGRESS,
    BN.REMAINING_SECONDS,
    BN.FAULT_CODE,
    BN.FAULT_TEXT,
)
UNIT_METHODS: Final = (
    BN.START_PROGRAM,
    BN.HOLD,
    BN.UNHOLD,
    BN.STOP,
    BN.ABORT,
    BN.CLEAR,
    BN.GET_RESULT,
)
TRANSPORT_VARS: Final = (BN.STATE, BN.TASK_ID, BN.FAULT_CODE, BN.FAULT_TEXT)
# Variables whose changes the ICD lets a server merge (besides the ProcessValues).
MERGEABLE: Final = frozenset({BN.PROGRESS, BN.REMAINING_SECONDS})
PV_PREFIX: Final = "pv:"  # key of a process value: (unit, "pv:Temperature_C")

Key = tuple[str, str]  # (location, variable): ("SEL1", "State"), ("SEL1", "pv:pH"), ...


class Kind(Enum):
    """Where a followed variable lives."""

    UNIT = 1
    PV = 2
    TRANSPORT = 3
    LOAD_PORT = 4
    OUTPUT_PORT = 5


@dataclass(frozen=True, slots=True)
class Item:
    """One followed variable: its cache key, where it lives, its node."""

    key: Key
    kind: Kind
    node: ua.NodeId

    @property
    def mergeable(self) -> bool:
        return self.kind is Kind.PV or self.key[1] in MERGEABLE


@dataclass(slots=True)
class Unit:
    unit_id: str
    node: ua.NodeId
    vars: dict[str, ua.NodeId]
    methods: dict[str, ua.NodeId]
    capabilities_node: ua.NodeId
    process_values: dict[str, ua.NodeId] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()


@dataclass(slots=True)
class Space:
    """The nodes of one shuttle, found at connect."""

    ns: int
    units: dict[str, Unit]
    transport: ua.NodeId
    transport_vars: dict[str, ua.NodeId]
    transport_methods: dict[str, ua.NodeId]
    load_port_id: ua.NodeId
    output_port_ids: ua.NodeId

    def items(self) -> list[Item]:
        """Every followed variable, in subscription order."""
        items: list[Item] = []
        for unit in self.units.values():
            items += [Item((unit.unit_id, v), Kind.UNIT, unit.vars[v]) for v in UNIT_VARS]
            items += [
                Item((unit.unit_id, PV_PREFIX + pv), Kind.PV, node)
                for pv, node in unit.process_values.items()
            ]
        items += [
            Item((icd.TRANSPORT, v), Kind.TRANSPORT, self.transport_vars[v]) for v in TRANSPORT_VARS
        ]
        items.append(Item((icd.LOAD_PORT, BN.CARTRIDGE_ID), Kind.LOAD_PORT, self.load_port_id))
        items.append(
            Item((icd.OUTPUT_PORT, BN.CARTRIDGE_IDS), Kind.OUTPUT_PORT, self.output_port_ids)
        )
        return items


def plain(node_id: ua.NodeId) -> ua.NodeId:
    """A NodeId without the ExpandedNodeId extras a server may return."""
    return ua.NodeId(node_id.Identifier, node_id.NamespaceIndex, node_id.NodeIdType)


async def discover(client: Client, instrument: str) -> Space:
    """Find every node of the ICD on a connected client; ``InstrumentError`` if absent."""
    namespaces = await client.get_namespace_array()
    try:
        ns = namespaces.index(icd.SHUTTLE_NS)
    except ValueError:
        raise InstrumentError(
            instrument, "connect", f"server has no namespace {icd.SHUTTLE_NS}"
        ) from None
    objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    top: list[list[str]] = [
        [BN.SHUTTLE, BN.UNITS],
        [BN.SHUTTLE, BN.TRANSPORT],
        [BN.SHUTTLE, BN.LOAD_PORT, BN.CARTRIDGE_ID],
        [BN.SHUTTLE, BN.OUTPUT_PORT, BN.CARTRIDGE_IDS],
        *([BN.SHUTTLE, BN.TRANSPORT, v] for v in TRANSPORT_VARS),
        [BN.SHUTTLE, BN.TRANSPORT, BN.MOVE],
        [BN.SHUTTLE, BN.TRANSPORT, BN.CLEAR],
    ]
    found = await _translate(client, instrument, [(objects, p) for p in top], ns)
    units_node, transport, load_port, output_port = found[:4]
    tvars = dict(zip(TRANSPORT_VARS, found[4 : 4 + len(TRANSPORT_VARS)], strict=True))
    move, tclear = found[-2:]
    children = (await _browse(client, instrument, [units_node], ns, ua.NodeClass.Object))[0]
    names = [*UNIT_VARS, BN.CAPABILITIES, BN.PROCESS_VALUES, *UNIT_METHODS]
    paths = [(node, [n]) for _unit_id, node in children for n in names]
    nodes = await _translate(client, instrument, paths, ns) if paths else []
    units: dict[str, Unit] = {}
    pv_parents: list[ua.NodeId] = []
    for i, (unit_id, node) in enumerate(children):
        if not icd.is_id(unit_id) or unit_id in units:
            raise InstrumentError(
                instrument, "connect", f"Units holds a malformed or repeated UnitId {unit_id!r}"
            )
        got = dict(zip(names, nodes[i * len(names) : (i + 1) * len(names)], strict=True))
        units[unit_id] = Unit(
            unit_id=unit_id,
            node=node,
            vars={n: got[n] for n in UNIT_VARS},
            methods={n: got[n] for n in UNIT_METHODS},
            capabilities_node=got[BN.CAPABILITIES],
        )
        pv_parents.append(got[BN.PROCESS_VALUES])
    pv_lists = await _browse(client, instrument, pv_parents, None, ua.NodeClass.Variable)
    for unit_id, pvs in zip(units, pv_lists, strict=True):
        units[unit_id].process_values = dict(pvs)
    return Space(
        ns=ns,
        units=units,
        transport=transport,
        transport_vars=tvars,
        transport_methods={BN.MOVE: move, BN.CLEAR: tclear},
        load_port_id=load_port,
        output_port_ids=output_port,
    )


async def _translate(
    client: Client, instrument: str, paths: Sequence[tuple[ua.NodeId, list[str]]], ns: int
) -> list[ua.NodeId]:
    """TranslateBrowsePathsToNodeIds for every path (browse names in the ICD namespace)."""
    requests = []
    for start, names in paths:
        rp = ua.RelativePath(
            Elements=[
                ua.RelativePathElement(
                    ReferenceTypeId=_HIERARCHICAL,
                    IsInverse=False,
                    IncludeSubtypes=True,
                    TargetName=ua.QualifiedName(n, ns),
                )
                for n in names
            ]
        )
        requests.append(ua.BrowsePath(StartingNode=start, RelativePath=rp))
    results = await client.uaclient.translate_browsepaths_to_nodeids(requests)
    if len(results) != len(paths):
        raise InstrumentError(
            instrument, "connect", f"{len(results)} answers to {len(paths)} browse paths"
        )
    out: list[ua.NodeId] = []
    for (_start, names), res in zip(paths, results, strict=True):
        if not res.StatusCode.is_good() or not res.Targets:
            raise InstrumentError(
                instrument,
                "connect",
                f"address space lacks {'/'.join(names)} ({res.StatusCode.name}); "
                "is this an ICD v1 Cell Shuttle?",
            )
        out.append(plain(res.Targets[0].TargetId))
    return out


async def _browse(
    client: Client,
    instrument: str,
    nodes: Sequence[ua.NodeId],
    ns: int | None,
    node_class: ua.NodeClass,
) -> list[list[tuple[str, ua.NodeId]]]:
    """Forward hierarchical children of each node of one class: [(BrowseName, NodeId)]."""
    if not nodes:
        return []
    params = ua.BrowseParameters()
    params.NodesToBrowse = [
        ua.BrowseDescription(
            NodeId=n,
            BrowseDirection=ua.BrowseDirection.Forward,
            ReferenceTypeId=_HIERARCHICAL,
            IncludeSubtypes=True,
            NodeClassMask=node_class.value,
            ResultMask=ua.BrowseResultMask.All,
        )
        for n in nodes
    ]
    results = await client.uaclient.browse(params)
    out: list[list[tuple[str, ua.NodeId]]] = []
    for res in results:
        check_status(instrument, "browse", res.StatusCode)
        refs = list(res.References or [])
        cp = res.ContinuationPoint
        while cp:
            nxt = ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=[cp])
            more = (await client.uaclient.browse_next(nxt))[0]
            refs += list(more.References or [])
            cp = more.ContinuationPoint
        out.append(
            [
                (r.BrowseName.Name, plain(r.NodeId))
                for r in refs
                if ns is None or r.BrowseName.NamespaceIndex == ns
            ]
        )
    return out
