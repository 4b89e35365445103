"""Security configuration of the OPC UA driver: what it refuses before touching the wire."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers._link import Backoff
from drivers.opcua import OpcUaSettings, OpcUaShuttle
from drivers.opcua.errors import SecurityConfigError
from drivers.opcua.security import SecurityConfig


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    for name in ("client.der", "client.pem", "server.der"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "trust").mkdir()
    return {
        "client_certificate": tmp_path / "client.der",
        "client_private_key": tmp_path / "client.pem",
        "server_certificate": tmp_path / "server.der",
        "trust_store": tmp_path / "trust",
    }


@pytest.mark.parametrize(
    "policy",
    [
        "Basic128Rsa15",
        "Basic256",
        "basic256",
        "http://opcfoundation.org/UA/SecurityPolicy#Basic256",
    ],
)
def test_deprecated_policies_are_refused_by_name(policy: str, files: dict[str, Path]) -> None:
    with pytest.raises(SecurityConfigError, match="deprecated"):
        OpcUaShuttle("S1", "opc.tcp://x:4840/shuttle", SecurityConfig(policy=policy, **files))


def test_none_is_refused_without_allow_none() -> None:
    with pytest.raises(SecurityConfigError, match="allow_none"):
        OpcUaShuttle("S1", "opc.tcp://x:4840/shuttle", SecurityConfig(policy="None"))
    # and is a ValueError too, so config loaders can report it as a bad value
    with pytest.raises(ValueError):
        SecurityConfig(policy="None").validate()


def test_none_is_accepted_when_explicitly_allowed() -> None:
    drv = OpcUaShuttle("S1", "opc.tcp://x:4840/shuttle", SecurityConfig.insecure())
    assert drv.security.is_none


def test_the_default_config_is_secure_and_needs_certificates() -> None:
    with pytest.raises(SecurityConfigError, match="client_certificate is required"):
        OpcUaShuttle("S1", "opc.tcp://x:4840/shuttle")


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes256_Sha256_RsaPss", "Aes256Sha256RsaPss"])
def test_the_icd_policies_are_accepted(policy: str, files: dict[str, Path]) -> None:
    cfg = SecurityConfig(policy=policy, **files)
    cfg.validate()
    assert cfg.canonical_policy in ("Basic256Sha256", "Aes256_Sha256_RsaPss")


def test_sign_only_and_unoffered_policies_are_refused(files: dict[str, Path]) -> None:
    with pytest.raises(SecurityConfigError, match="SignAndEncrypt"):
        SecurityConfig(mode="Sign", **files).validate()
    with pytest.raises(SecurityConfigError, match="not offered"):
        SecurityConfig(policy="Aes128_Sha256_RsaOaep", **files).validate()


def test_missing_files_are_named(files: dict[str, Path], tmp_path: Path) -> None:
    files["server_certificate"] = tmp_path / "nope.der"
    with pytest.raises(SecurityConfigError, match=r"server_certificate .*nope\.der"):
        SecurityConfig(**files).validate()


def test_backoff_settings_are_the_shared_backoff() -> None:
    s = OpcUaSettings(backoff_initial=0.1, backoff_max=1.0, backoff_factor=2.0, jitter=0.5)
    assert s.backoff == Backoff(initial=0.1, maximum=1.0, factor=2.0, jitter=0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"publishing_interval_ms": 50.0},
        {"queue_size": 1},
        {"queue_size": 9},  # ICD 1.1: clients ask for a queue of at least 10
        {"jitter": 2.0},
        {"backoff_initial": 0},
        {"request_timeout": 0},
        {"event_queue_limit": 3},
    ],
)
def test_settings_outside_the_icd_or_sense_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OpcUaSettings(**kwargs)  # type: ignore[arg-type]
