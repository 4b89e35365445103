"""Helpers of the OPC UA driver tests: certificates made with asyncua's cert_gen."""

from __future__ import annotations

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


def make_cert(directory: Path, name: str, uri: str, server: bool) -> tuple[Path, Path]:
    key = generate_private_key()
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]
    usage = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usage.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = generate_self_signed_app_certificate(
        key, name, {"organizationName": "cellfab-test"}, sans, usage
    )
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(dump_private_key_as_pem(key))
    return cert_path, key_path


@dataclass
class SecureSetup:
    url: str
    client_cert: Path
    client_key: Path
    server_cert: Path
    trust: Path
    stranger_cert: Path
    empty_trust: Path
