"""Secure channels to a secure-only twin: both ICD policies work, a wrong pin or an
untrusted server certificate is refused with SecurityRejected, None is not offered."""

from __future__ import annotations

import pytest

from drivers.base import InstrumentError
from drivers.opcua import OpcUaSettings, OpcUaShuttle
from drivers.opcua.errors import SecurityRejected
from drivers.opcua.security import SecurityConfig
from tests.support.shuttle import SecureSetup

SETTINGS = OpcUaSettings(request_timeout=3.0, connect_timeout=15.0)


def config(s: SecureSetup, policy: str, **over: object) -> SecurityConfig:
    kwargs: dict[str, object] = {
        "policy": policy,
        "client_certificate": s.client_cert,
        "client_private_key": s.client_key,
        "server_certificate": s.server_cert,
        "trust_store": s.trust,
    }
    kwargs.update(over)
    return SecurityConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes256_Sha256_RsaPss"])
async def test_sign_and_encrypt_connects_and_calls(
    shuttle_secure: SecureSetup, policy: str
) -> None:
    async with OpcUaShuttle(
        "sec", shuttle_secure.url, config(shuttle_secure, policy), SETTINGS
    ) as drv:
        units = await drv.units()
        assert "INC01" in units
        assert (await drv.unit_status("INC01")).state == "Idle"
        client = drv._conn.client
        assert client is not None
        assert client.security_policy.URI.endswith(policy)


async def test_a_server_that_does_not_match_the_pin_is_refused(shuttle_secure: SecureSetup) -> None:
    drv = OpcUaShuttle(
        "sec",
        shuttle_secure.url,
        config(shuttle_secure, "Basic256Sha256", server_certificate=shuttle_secure.stranger_cert),
    )
    with pytest.raises(SecurityRejected, match="does not match the pinned"):
        async with drv:
            pass
    assert drv.state == "closed"


async def test_a_pinned_server_outside_the_trust_store_is_refused(
    shuttle_secure: SecureSetup,
) -> None:
    cfg = config(shuttle_secure, "Basic256Sha256", trust_store=shuttle_secure.empty_trust)
    with pytest.raises(SecurityRejected, match="BadCertificateUntrusted"):
        async with OpcUaShuttle("sec", shuttle_secure.url, cfg, SETTINGS):
            pass


async def test_policy_none_is_not_silently_used_against_a_secure_server(
    shuttle_secure: SecureSetup,
) -> None:
    with pytest.raises(InstrumentError):
        async with OpcUaShuttle("sec", shuttle_secure.url, SecurityConfig.insecure(), SETTINGS):
            pass
