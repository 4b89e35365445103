"""From a site to driver objects: the one place that maps configuration to drivers.

``build_drivers(site)`` constructs, without connecting, one driver per instrument of
the site through the drivers' public constructors only:

* a shuttle -> ``OpcUaShuttle(name, url, security=SecurityConfig(...))``: a development
  instrument (``allow_none``) gets ``SecurityConfig.insecure()``; a secure one its
  policy with SignAndEncrypt and the four identity files (and revocation folder);
* an analyzer -> ``ModbusAnalyzer(name, TcpEndpoint | RtuEndpoint, ModbusSettings)``
  with the site's device id;
* a balance -> ``SerialBalance(name, device)``.

The daemon enters them (``async with``) and programs against the Protocols of
``drivers.base`` only; ``Instruments`` is typed with those Protocols. This module
imports the drivers (and so asyncua and pymodbus): the rest of ``daemon.config`` does
not, so checking a site stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from daemon.config.model import Analyzer as AnalyzerConfig
from daemon.config.model import Rtu, Security, Site
from drivers.base import Analyzer, Balance, Shuttle
from drivers.modbus import ModbusAnalyzer, ModbusSettings, RtuEndpoint, TcpEndpoint
from drivers.opcua import OpcUaShuttle, SecurityConfig
from drivers.serial import SerialBalance


@dataclass(frozen=True, slots=True)
class Instruments:
    """The drivers of one site by name, not connected."""

    shuttles: Mapping[str, Shuttle]
    analyzers: Mapping[str, Analyzer]
    balances: Mapping[str, Balance]

    @property
    def by_name(self) -> Mapping[str, Shuttle | Analyzer | Balance]:
        """Every instrument by its (site-unique) name."""
        return MappingProxyType({**self.shuttles, **self.analyzers, **self.balances})


def security_config(security: Security) -> SecurityConfig:
    """The driver's security configuration for a shuttle's ``security`` entry."""
    if security.allow_none:
        return SecurityConfig.insecure()
    return SecurityConfig(
        policy=security.policy,
        mode="SignAndEncrypt",
        client_certificate=security.certificate,
        client_private_key=security.private_key,
        server_certificate=security.server_certificate,
        trust_store=security.trust,
        revocation_dir=security.revocation,
    )


def analyzer_endpoint(analyzer: AnalyzerConfig) -> TcpEndpoint | RtuEndpoint:
    """The Modbus endpoint of an analyzer entry (TCP host:port or an RTU line)."""
    wire = analyzer.endpoint
    if isinstance(wire, Rtu):
        return RtuEndpoint(wire.device, wire.baudrate, wire.bytesize, wire.parity, wire.stopbits)
    return TcpEndpoint(wire.host, wire.port)


def build_drivers(site: Site) -> Instruments:
    """One driver per instrument of ``site``, constructed and not connected.

    Raises ``drivers.opcua.SecurityConfigError`` when a security file has gone
    since the site was loaded (the driver checks them again).
    """
    shuttles = {
        s.name: OpcUaShuttle(s.name, s.url, security=security_config(s.security))
        for s in site.shuttles
    }
    analyzers = {
        a.name: ModbusAnalyzer(a.name, analyzer_endpoint(a), ModbusSettings(device_id=a.device_id))
        for a in site.analyzers
    }
    balances = {b.name: SerialBalance(b.name, b.device) for b in site.balances}
    return Instruments(
        MappingProxyType(shuttles), MappingProxyType(analyzers), MappingProxyType(balances)
    )
