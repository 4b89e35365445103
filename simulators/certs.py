"""Self-signed OPC UA application certificates for the twins, their tests and demos.

Owns making (once) and reusing a key + certificate pair in a directory, built with
asyncua's own certificate generator so the certificates carry what OPC UA asks for
(application URI in subjectAltName, key usages, client or server extended key usage).
The shuttle twin uses ``ensure_certificate`` for its server certificate; tests and the
``sim``/``demo`` commands use it for client certificates they put in a trust list.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID


@dataclass(frozen=True, slots=True)
class CertPair:
    """Paths of a DER certificate and its PEM private key."""

    cert: Path
    key: Path
    application_uri: str


def ensure_certificate(
    directory: Path,
    name: str,
    application_uri: str,
    *,
    server: bool,
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = 3650,
) -> CertPair:
    """Make ``<name>.der`` / ``<name>.pem`` in ``directory`` unless both exist; reuse them."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}.pem"
    if cert_path.is_file() and key_path.is_file():
        return CertPair(cert_path, key_path, application_uri)
    key = generate_private_key()
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in (*hostnames, socket.gethostname()):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    usage = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usage.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = generate_self_signed_app_certificate(
        key, name, {"organizationName": "cellfab"}, sans, extended=usage, days=days
    )
    key_path.write_bytes(dump_private_key_as_pem(key))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    return CertPair(cert_path, key_path, application_uri)
