"""Fixtures of the OPC UA driver tests: one secure-only shuttle twin for the session.

Certificates are generated with asyncua's cert_gen: a client certificate the twin trusts,
and a stranger server certificate to pin by mistake.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from opcua_support import SecureSetup, make_cert

from simulators.clock import Clock
from simulators.runner import BackgroundLoop
from simulators.shuttle import ShuttleTwin
from simulators.world import World


@pytest.fixture(scope="session")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureSetup]:
    root = tmp_path_factory.mktemp("opcua-secure")
    trusted_clients = root / "twin-trusted"
    trusted_clients.mkdir()
    client_cert, client_key = make_cert(root, "daemon", "urn:cellfab:daemon:test", server=False)
    shutil.copy(client_cert, trusted_clients / client_cert.name)
    stranger, _ = make_cert(root, "stranger", "urn:cellfab:shuttle:stranger", server=True)
    # the twin reuses a shuttle.der/.pem found in its cert_dir (made here with cert_gen)
    (root / "twin").mkdir()
    make_cert(root / "twin", "shuttle", "urn:cellfab:shuttle:SEC-1", server=True)
    loop = BackgroundLoop("opcua-secure-twin")
    twin = ShuttleTwin(
        World(seed=3),
        Clock(36_000.0),
        security="secure",
        cert_dir=root / "twin",
        trusted_clients_dir=trusted_clients,
        serial_number="SEC-1",
    )
    loop.run(twin.start())
    trust = root / "daemon-trust"
    trust.mkdir()
    shutil.copy(twin.server_certificate_path, trust / "shuttle.der")
    empty_trust = root / "daemon-trust-stranger-only"
    empty_trust.mkdir()
    shutil.copy(stranger, empty_trust / "stranger.der")
    yield SecureSetup(
        twin.url,
        client_cert,
        client_key,
        twin.server_certificate_path,
        trust,
        stranger,
        empty_trust,
    )
    loop.run(twin.stop())
    loop.close()
