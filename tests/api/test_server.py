"""The API server in the daemon: a UNIX socket (mode 0660, stale or live file), TLS, an
address in use, a clean stop with an event stream open, the role check on every route,
and a bug answered 500 while the daemon goes on serving."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import socket
import ssl
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import daemon.api.views as views
from daemon.api.access import ACTIONS
from daemon.api.server import SOCKET_MODE, ApiStartError
from daemon.config.model import Api
from tests.support import CELLFAB, HANG_GUARD
from tests.support.daemon import (
    PASSWORD,
    STAFF,
    SimTwins,
    client_for,
    daemon_site,
    running_daemon,
)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder whose socket paths fit sun_path (pytest's tmp_path may be too long)."""
    with tempfile.TemporaryDirectory(prefix="cf-", dir="/tmp") as d:
        yield Path(d)


def _stale_socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays: a daemon that died


def _leaves(exc: BaseException) -> list[BaseException]:
    """Every exception in ``exc``, groups within groups opened (the daemon nests its task
    groups; ``cellfab run`` matches with ``except*``, which does the same)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _raises_start_error(site_changes: dict, sim_cell: SimTwins, tmp_path: Path) -> str:
    site = daemon_site(sim_cell, tmp_path / "j.sqlite", **site_changes)
    with pytest.raises(BaseException) as info, running_daemon(site):
        pass
    errors = _leaves(info.value)
    (error,) = [e for e in errors if isinstance(e, ApiStartError)]
    return str(error)


async def test_the_api_on_a_unix_socket_is_0660_and_removed_at_stop(
    sim_cell: SimTwins, tmp_path: Path, short_dir: Path
) -> None:
    path = short_dir / "api.sock"
    _stale_socket(path)
    site = daemon_site(sim_cell, tmp_path / "j.sqlite", api_bind=f"unix:{path}")
    with running_daemon(site) as running:
        assert running.url == f"unix:{path}"
        mode = path.lstat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == SOCKET_MODE == 0o660
        running.hire({"op1": STAFF["op1"]})
        async with client_for(running.url, running.token("op1")) as api:
            assert (await api.get("/health")).json()["status"] == "serving"
            answer = await api.post("/batches/B0001-XXX/commands/hold", json={"reason": "t"})
            assert answer.status_code == 404
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
        for args, typed in (
            (["login", "--user", "op1", "--api", running.url], PASSWORD + "\n"),
            (["batch", "list", "--json", "--api", running.url], None),
        ):
            done = await asyncio.to_thread(
                partial(
                    subprocess.run,
                    [CELLFAB, *args],
                    input=typed,
                    capture_output=True,
                    text=True,
                    timeout=HANG_GUARD,
                    env=env,
                )
            )
            assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == []
    assert not path.exists()


def test_a_live_socket_or_a_file_in_the_way_is_not_taken(
    sim_cell: SimTwins, tmp_path: Path, short_dir: Path
) -> None:
    live = short_dir / "live.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(live))
    listener.listen(1)
    try:
        why = _raises_start_error({"api": Api(bind=f"unix:{live}")}, sim_cell, tmp_path)
        assert "a daemon listens there" in why
        assert live.exists()  # another daemon's socket is left alone
    finally:
        listener.close()
    regular = short_dir / "file.sock"
    regular.write_text("not a socket")
    why = _raises_start_error({"api": Api(bind=f"unix:{regular}")}, sim_cell, tmp_path)
    assert "not a socket" in why and regular.read_text() == "not a socket"


def test_an_address_in_use_is_a_start_error_naming_it(sim_cell: SimTwins, tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        why = _raises_start_error({"api": Api(bind=f"127.0.0.1:{port}")}, sim_cell, tmp_path)
    finally:
        taken.close()
    assert f"127.0.0.1:{port}" in why and "in use" in why


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cellfab api test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "api.pem", folder / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_serves_https_with_the_sites_certificate(
    sim_cell: SimTwins, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    api = Api.model_validate(
        {"bind": "127.0.0.1:0", "tls": {"certificate": str(cert), "private_key": str(key)}}
    )
    with running_daemon(daemon_site(sim_cell, tmp_path / "j.sqlite", api=api)) as running:
        assert running.url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(cert))
        async with client_for(running.url, verify=trusting) as client:
            assert (await client.get("/health")).status_code == 200
        async with client_for(running.url) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/health")
        plain = running.url.replace("https://", "http://")
        async with client_for(plain) as cleartext:
            with pytest.raises(httpx.HTTPError):
                await cleartext.get("/health")


async def test_the_daemon_stops_cleanly_with_an_event_stream_open(
    sim_cell: SimTwins, tmp_path: Path
) -> None:
    context = running_daemon(daemon_site(sim_cell, tmp_path / "j.sqlite"))
    running = context.__enter__()
    stopped = False
    try:
        running.hire({"op1": STAFF["op1"]})
        async with client_for(running.url, running.token("op1")) as api:
            lines: list[str] = []

            async def read() -> None:
                async with api.stream("GET", "/events") as response:
                    async for line in response.aiter_lines():
                        lines.append(line)

            reader = asyncio.create_task(read())
            await asyncio.sleep(0.2)  # a real client, reading
            await asyncio.to_thread(context.__exit__, None, None, None)  # stops or fails
            stopped = True
            async with asyncio.timeout(HANG_GUARD):
                with contextlib.suppress(httpx.HTTPError):
                    await reader  # the stream ended with the daemon
    finally:
        if not stopped:
            context.__exit__(None, None, None)
    assert reader.done()


async def test_every_route_has_an_action_for_the_role_check(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    operations = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    assert operations == set(ACTIONS)  # operationId is the route name


async def test_a_bug_is_a_500_that_names_no_field_and_the_daemon_goes_on(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (await api.get("/health")).json()["internal_errors"]
    for error in (RuntimeError("boom"), KeyError("lost")):

        def broken(_snapshot: object, error: Exception = error) -> None:
            raise error

        monkeypatch.setattr(views, "instruments", broken)
        answer = await api.get("/instruments")
        assert answer.status_code == 500
        assert answer.json() == {
            "error": "internal",
            "field": "",
            "detail": "internal error (a bug in cellfab; the daemon log has it)",
            "errors": [],
        }
    monkeypatch.undo()
    assert (await api.get("/instruments")).status_code == 200
    health = (await api.get("/health")).json()
    assert health["internal_errors"] == before + 2
