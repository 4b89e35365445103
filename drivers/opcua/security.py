"""Security of the OPC UA driver: which channels it accepts and how it trusts a shuttle.

This module owns ``SecurityConfig`` (what a site configures for one shuttle) and
``apply_security`` (what the driver does with it before every connect):

* Policies: ``Basic256Sha256`` and ``Aes256_Sha256_RsaPss`` with ``SignAndEncrypt``
  (the two the ICD says a shuttle offers). The deprecated ``Basic128Rsa15`` and
  ``Basic256`` are refused with a clear error. ``None`` is refused unless
  ``allow_none=True`` is set explicitly (development twins only).
* Our identity: the client certificate and key come from files; the client's
  ApplicationUri is taken from the certificate's SubjectAltName URI, so the two
  always agree (servers check that).
* The shuttle's identity, checked twice:
  1. pinning: before the secure channel is opened, the endpoint list (GetEndpoints on
     the discovery channel) must carry exactly the pinned certificate, compared as
     DER bytes; asyncua then compares it once more in CreateSession;
  2. validation: asyncua validates nothing by default, so the driver installs
     asyncua's ``CertificateValidator`` with ``TRUSTED_VALIDATION | PEER_SERVER``
     (validity period, ApplicationUri in the SubjectAltName, key usage, server-auth
     extended key usage, chain to a certificate in the trust store, not revoked by a
     CRL in ``revocation_dir``). The pinned certificate (or its CA) must therefore be
     in ``trust_store``.
  A failure of either raises ``SecurityRejected``; a bad configuration raises
  ``SecurityConfigError`` (an ``InvalidArgument`` and a ``ValueError``) at construction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509

from drivers.opcua.errors import SecurityConfigError, SecurityRejected

POLICY_NONE: Final = "None"
BASIC256SHA256: Final = "Basic256Sha256"
AES256_SHA256_RSAPSS: Final = "Aes256_Sha256_RsaPss"

# Canonical OPC UA policy name -> asyncua policy class; spellings accepted on input.
_POLICIES: Final[dict[str, type[security_policies.SecurityPolicy]]] = {
    BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
    AES256_SHA256_RSAPSS: security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_ALIASES: Final[dict[str, str]] = {
    "basic256sha256": BASIC256SHA256,
    "aes256_sha256_rsapss": AES256_SHA256_RSAPSS,
    "aes256sha256rsapss": AES256_SHA256_RSAPSS,
    "none": POLICY_NONE,
}
DEPRECATED_POLICIES: Final = frozenset({"basic128rsa15", "basic256"})


def _norm(policy: str) -> str:
    return policy.strip().lower().removeprefix("http://opcfoundation.org/ua/securitypolicy#")


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """How the driver secures its channel to one shuttle.

    ``policy``: ``Basic256Sha256`` (default) or ``Aes256_Sha256_RsaPss``; ``None`` only
    with ``allow_none=True``. ``mode``: ``SignAndEncrypt`` (the only one accepted for a
    secure policy). Paths: our certificate (DER or PEM) and private key (PEM or DER),
    the pinned server certificate, the trust store directory (trusted server
    certificates or their CAs), optionally a directory of CRLs.
    """

    policy: str = BASIC256SHA256
    mode: str = "SignAndEncrypt"
    client_certificate: Path | None = None
    client_private_key: Path | None = None
    server_certificate: Path | None = None
    trust_store: Path | None = None
    revocation_dir: Path | None = None
    private_key_password: str | None = None
    allow_none: bool = False

    @classmethod
    def insecure(cls) -> SecurityConfig:
        """The development configuration: policy None, explicitly allowed."""
        return cls(policy=POLICY_NONE, mode="None", allow_none=True)

    @property
    def canonical_policy(self) -> str:
        return _ALIASES.get(_norm(self.policy), self.policy)

    @property
    def is_none(self) -> bool:
        return self.canonical_policy == POLICY_NONE

    def policy_class(self) -> type[security_policies.SecurityPolicy]:
        return _POLICIES[self.canonical_policy]

    def validate(self, instrument: str = "opcua") -> None:
        """Raise SecurityConfigError naming what is wrong; checks files exist."""

        def bad(detail: str) -> SecurityConfigError:
            return SecurityConfigError(instrument, "configure security", detail)

        norm = _norm(self.policy)
        if norm in DEPRECATED_POLICIES:
            raise bad(
                f"security policy {self.policy!r} is deprecated (SHA-1/RSA-1.5) and refused; "
                f"use {BASIC256SHA256} or {AES256_SHA256_RSAPSS} with SignAndEncrypt"
            )
        canonical = self.canonical_policy
        if canonical == POLICY_NONE:
            if not self.allow_none:
                raise bad(
                    "security policy None is refused unless allow_none is set explicitly "
                    "(development instruments only)"
                )
            return
        if canonical not in _POLICIES:
            raise bad(
                f"security policy {self.policy!r} is not offered by a Cell Shuttle; "
                f"use {BASIC256SHA256} or {AES256_SHA256_RSAPSS}"
            )
        if self.mode != "SignAndEncrypt":
            raise bad(f"message security mode {self.mode!r} is refused; use SignAndEncrypt")
        for label, path, is_dir in (
            ("client_certificate", self.client_certificate, False),
            ("client_private_key", self.client_private_key, False),
            ("server_certificate", self.server_certificate, False),
            ("trust_store", self.trust_store, True),
        ):
            if path is None:
                raise bad(f"{label} is required for {canonical}")
            p = Path(path)
            if is_dir and not p.is_dir():
                raise bad(f"{label} {str(p)!r} is not a directory")
            if not is_dir and not p.is_file():
                raise bad(f"{label} {str(p)!r} is not a file")
        if self.revocation_dir is not None and not Path(self.revocation_dir).is_dir():
            raise bad(f"revocation_dir {str(self.revocation_dir)!r} is not a directory")


def _load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def der_of(path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return _load_cert(path).public_bytes(Encoding.DER)


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()[:16]


def application_uri_of(path: Path) -> str | None:
    """The URI SubjectAltName of a certificate (OPC UA's ApplicationUri), if any."""
    try:
        san = _load_cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _first_cert(der: bytes) -> bytes:
    # A server may send its certificate followed by its chain: keep the leaf.
    if len(der) < 4:
        return der
    return der[: int.from_bytes(der[2:4], "big") + 4]


async def check_pinned_endpoint(
    client: Client, config: SecurityConfig, pinned_der: bytes, instrument: str
) -> None:
    """GetEndpoints on the discovery channel: the pinned certificate must be offered.

    Also checks the server offers the configured policy with SignAndEncrypt.
    """
    endpoints = await client.connect_and_get_server_endpoints()
    policy_uri = config.policy_class().URI
    matching = [
        ep
        for ep in endpoints
        if ep.SecurityPolicyUri == policy_uri
        and ep.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt
    ]
    if not matching:
        offered = sorted(
            {
                f"{ep.SecurityPolicyUri.rsplit('#', 1)[-1]}/{ep.SecurityMode.name}"
                for ep in endpoints
            }
        )
        raise SecurityRejected(
            instrument,
            "connect",
            f"server offers no {config.canonical_policy}/SignAndEncrypt endpoint "
            f"(offered: {', '.join(offered)})",
        )
    certs = {_first_cert(ep.ServerCertificate or b"") for ep in matching}
    if pinned_der not in certs:
        got = ", ".join(fingerprint(c) for c in sorted(certs))
        raise SecurityRejected(
            instrument,
            "connect",
            f"server certificate does not match the pinned one "
            f"(pinned sha256 {fingerprint(pinned_der)}, server offers {got})",
        )


async def apply_security(client: Client, config: SecurityConfig, instrument: str) -> None:
    """Configure ``client`` (not yet connected) for ``config``; pin and validate.

    Opens a short discovery connection for the pin check. Raises SecurityRejected or
    the asyncua exception of a failed discovery connection (the caller translates).
    """
    if config.is_none:
        return
    assert config.client_certificate and config.client_private_key
    assert config.server_certificate and config.trust_store
    uri = application_uri_of(Path(config.client_certificate))
    if uri:
        client.application_uri = uri
    pinned = der_of(Path(config.server_certificate))
    await check_pinned_endpoint(client, config, pinned, instrument)
    await client.set_security(
        config.policy_class(),
        str(config.client_certificate),
        str(config.client_private_key),
        config.private_key_password,
        pinned,
        ua.MessageSecurityMode.SignAndEncrypt,
    )
    crl = [Path(config.revocation_dir)] if config.revocation_dir else []
    store = TrustStore([Path(config.trust_store)], crl)
    await store.load()
    client.certificate_validator = CertificateValidator(
        CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_SERVER,
        store,
    )
