"""Addresses a site names: TCP ``host:port``, the API's bind, OPC UA endpoint URLs, paths.

This module owns parsing them into values (``HostPort``, ``UnixSocket``) and writing
them back in one canonical form (IP literals normalized, default ports made explicit:
4840 for a shuttle, 5020 for Cell Q, 8470 for the API), so that two spellings of one
endpoint compare equal. Every refusal is a ``RuleError`` with a hint that shows the
expected form; ``daemon.config.model`` turns them into diagnostics at the field.
Paths (``resolve_path``): ``~`` expanded, relative ones taken from the site's folder.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from daemon.config.errors import rule
from drivers import icd

DEFAULT_API_PORT: Final = 8470
MAX_UNIX_PATH: Final = 107  # bytes of sun_path on Linux, less the terminating NUL
_HOST_NAME: Final = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True, slots=True)
class HostPort:
    """A TCP address: an IP literal or a host name, and a port."""

    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UnixSocket:
    """A UNIX domain socket the API listens on."""

    path: Path

    def __str__(self) -> str:
        return f"unix:{self.path}"


def resolve_path(text: str, base: Path | None) -> Path:
    """``~`` expanded; relative to ``base`` (the site file's folder) when given."""
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    return Path(os.path.normpath(path))


def check_host(host: str) -> str:
    """The host of an address: an IPv4/IPv6 literal or a DNS name, else a RuleError."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _HOST_NAME.match(host) is None:
        raise rule(f"{host!r} is not a host name or an IP address")
    return host


def parse_host_port(text: str, default_port: int, *, min_port: int = 1) -> HostPort:
    """``host:port``, ``[v6]:port`` or ``host`` (``default_port``). Raises RuleError."""
    how = f"write host:port, e.g. 127.0.0.1:{default_port} (an IPv6 address as [::1]:port)"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise rule(f"{text!r} is not host:port", how)
        port_text = rest[1:] if rest else ""
    elif text.count(":") > 1:
        raise rule(f"{text!r} is not host:port", "write an IPv6 address in brackets: [::1]:port")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise rule(f"{text!r} names no host", how)
    if text.endswith(":") or (port_text and not port_text.isdigit()):
        raise rule(f"the port of {text!r} is not a number", how)
    port = int(port_text) if port_text else default_port
    if not min_port <= port <= 65535:
        raise rule(f"port {port} is outside {min_port}..65535", how)
    return HostPort(check_host(host), port)


def parse_bind(text: str, base: Path | None = None) -> HostPort | UnixSocket:
    """``unix:PATH`` (relative to the site file) or ``host:port`` (port 0: any free one)."""
    if text.startswith("unix:"):
        raw = text.removeprefix("unix:")
        if not raw or "\x00" in raw:
            raise rule(f"{text!r} names no socket path", "write unix:/run/cellfab/api.sock")
        path = resolve_path(raw, base)
        if len(os.fsencode(path)) > MAX_UNIX_PATH:
            raise rule(
                f"the socket path is {len(os.fsencode(path))} bytes; "
                f"a UNIX socket path has at most {MAX_UNIX_PATH}",
                "choose a shorter path, e.g. under /run/cellfab/",
            )
        return UnixSocket(path)
    return parse_host_port(text, DEFAULT_API_PORT, min_port=0)


def canonical_opc_url(value: str) -> str:
    """An ``opc.tcp://host[:port]/path`` URL with the ICD's port 4840 made explicit."""
    how = "write opc.tcp://host:4840/shuttle"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise rule(f"{value!r} is not a URL: {exc}", how) from exc
    if parts.scheme != "opc.tcp":
        raise rule(f"{value!r} is not an opc.tcp:// URL", how)
    if not parts.hostname:
        raise rule(f"{value!r} names no host", how)
    if parts.username is not None or parts.query or parts.fragment:
        raise rule(f"{value!r}: an OPC UA endpoint URL has no user, query or fragment", how)
    host = check_host(parts.hostname)
    hostport = HostPort(host, port if port is not None else icd.DEFAULT_SHUTTLE_PORT)
    if hostport.port == 0:
        raise rule("port 0 cannot be connected to", how)
    return urlunsplit(("opc.tcp", str(hostport), parts.path, "", ""))
