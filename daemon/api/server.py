"""The API server: uvicorn inside the supervisor's task group (decision 0062).

This module owns listening and serving: ``serve_api(daemon, task_status=...)`` binds the
site's ``api.bind`` itself (so port 0 gives a free port, and the address is known
before anyone connects), serves the app of ``create_app(daemon)`` with uvicorn on that
socket, records the address clients use in ``daemon.api_url`` (``http://127.0.0.1:PORT``,
``https://...`` with the site's TLS certificate and key, or ``unix:PATH``), reports
``started`` once it listens, and serves until cancelled. Then it stops cleanly: event
streams end, no new connection is taken, requests in flight get ``SHUTDOWN_S`` seconds,
and a UNIX socket file is removed.

A UNIX socket is created with mode 0660 (the owner and the group may use the API; the
group is how the control plane will grant access) before it listens; a stale socket
file of a dead daemon is replaced, a live one is refused. Uvicorn's own signal handling
is off: the supervisor owns SIGTERM and SIGINT.

::

    bind (ApiStartError if refused) -> uvicorn startup -> started -> serving
      -> cancelled -> streams closed -> uvicorn shutdown (bounded) -> socket closed
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
import structlog
import uvicorn

from daemon.api.app import create_app
from daemon.api.errors import Quiet
from daemon.config.addresses import HostPort, UnixSocket
from daemon.config.model import Tls
from daemon.supervisor import Daemon

log = structlog.get_logger("cellfab.api")

SHUTDOWN_S: Final = 5  # seconds a request in flight may take to finish at a stop
BACKLOG: Final = 128
MAX_CONNECTIONS: Final = 256  # beyond this uvicorn answers 503 (a guard, not a quota)
SOCKET_MODE: Final = 0o660


class ApiStartError(RuntimeError):
    """The API cannot listen where the site says (address in use, no such folder...)."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the supervisor owns the signals


async def serve_api(
    daemon: Daemon, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Serve the daemon's API until cancelled (see the module doc)."""
    endpoint = daemon.site.api.endpoint
    tls = daemon.site.api.tls
    app = create_app(daemon)
    listener = listen(endpoint)
    config = uvicorn.Config(
        Quiet(app),
        http="h11",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        backlog=BACKLOG,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=SHUTDOWN_S,
        ssl_certfile=str(tls.certificate) if tls else None,
        ssl_keyfile=str(tls.private_key) if tls else None,
    )
    server = _Server(config)
    try:
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[listener.sock])
        daemon.api_url = url_of(endpoint, listener.sock, tls)
        log.info("api listening", url=daemon.api_url)
        task_status.started(daemon.api_url)
        await server.main_loop()
    finally:
        with anyio.CancelScope(shield=True):
            server.should_exit = True
            await app.state.streams.close_all()
            if server.started:
                with anyio.move_on_after(SHUTDOWN_S + 1):
                    await server.shutdown(sockets=[listener.sock])
            listener.close()
            log.info("api closed")


def url_of(endpoint: HostPort | UnixSocket, sock: socket.socket, tls: Tls | None) -> str:
    """The URL a client uses for the bound socket."""
    if isinstance(endpoint, UnixSocket):
        return f"unix:{endpoint.path}"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


@dataclass
class Listener:
    """A listening socket, and the socket file it made (removed at close if still its)."""

    sock: socket.socket
    path: Path | None = None
    inode: int = 0

    def close(self) -> None:
        self.sock.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                if self.path.lstat().st_ino == self.inode:
                    self.path.unlink()


def listen(endpoint: HostPort | UnixSocket) -> Listener:
    """A listening, non-blocking socket bound to ``endpoint``; ApiStartError says why not."""
    try:
        if isinstance(endpoint, UnixSocket):
            sock = _unix(endpoint.path)
            listener = Listener(sock, endpoint.path, endpoint.path.lstat().st_ino)
        else:
            listener = Listener(_tcp(endpoint))
    except OSError as exc:
        raise ApiStartError(f"the API cannot listen on {endpoint}: {exc.strerror or exc}") from exc
    listener.sock.setblocking(False)
    return listener


def _tcp(endpoint: HostPort) -> socket.socket:
    family, kind, proto, _name, address = socket.getaddrinfo(
        endpoint.host, endpoint.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _unix(path: Path) -> socket.socket:
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ApiStartError(f"the API cannot listen on unix:{path}: it is not a socket")
        if _alive(path):
            raise ApiStartError(f"the API cannot listen on unix:{path}: a daemon listens there")
        path.unlink()  # a dead daemon's socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        os.chmod(path, SOCKET_MODE)  # before listen: nobody can connect in between
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _alive(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
