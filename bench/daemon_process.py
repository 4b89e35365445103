"""`cellfab run` as a child process: start it, wait until its API answers, kill -9 it.

Owns the one way the durability tests (tests/durability), the recovery benchmark
(``bench.recovery``) and the README's kill loop (``bench.kill_loop``) run the daemon: the
real console script, its site file, its log (JSON lines, appended across restarts, one
``# start N`` line before each start) in a file beside it. Readiness is the API's
``GET /health`` answering 200; a daemon that exits before that is an error that shows the
tail of its log.

``Staff`` are the people who use such a daemon, made as an installation makes them
(decision 0080): the first admin locally on the journal with ``cellfab user add NAME
--first-admin`` before the first start, then, once the API serves, the admin signs in
and adds the others over the API, and each signs in once. Their tokens live in the
journal, so they outlast a kill -9: a 401 after a restart is a bug, never retried.

::

    stopped --start()--> starting --/health 200--> serving --kill()--> stopped (SIGKILL)
                             |                        |
                             +-- exits: DaemonExited  +--stop()--> stopped (SIGTERM)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

CELLFAB: Final = str(Path(sys.executable).with_name("cellfab"))
_UNIX_BASE: Final = "http://cellfab"


class DaemonExited(RuntimeError):
    """The daemon process ended when it should have been serving."""


def api_client(url: str, timeout: float = 10.0) -> httpx.Client:
    """A synchronous client for ``http://...`` or ``unix:PATH``."""
    if url.startswith("unix:"):
        transport = httpx.HTTPTransport(uds=url.removeprefix("unix:"))
        return httpx.Client(base_url=_UNIX_BASE, transport=transport, timeout=timeout)
    return httpx.Client(base_url=url, timeout=timeout)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@dataclass
class Staff:
    """People of a daemon (name -> printed name and roles), one password for all (a
    test's or a benchmark's), and each one's sign-in token once ``hire`` has run."""

    people: Mapping[str, tuple[str, tuple[str, ...]]]
    password: str
    admin: str = "admin"
    tokens: dict[str, str] = field(default_factory=dict)

    def first_admin(self, site_file: Path, env: Mapping[str, str] | None = None) -> None:
        """``cellfab user add ADMIN --first-admin --site SITE`` (the password twice on
        standard input), on the site's journal, before the daemon first starts."""
        args = ["user", "add", self.admin, "--first-admin", "--full-name", "Ada Admin",
                "--reason", "installation", "--site", str(site_file)]  # fmt: skip
        done = subprocess.run(
            [CELLFAB, *args],
            input=f"{self.password}\n{self.password}\n",
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(env or {})},
        )
        if done.returncode != 0:
            raise RuntimeError(f"cellfab {' '.join(args)}: exit {done.returncode}: {done.stderr}")

    def hire(self, api_url: str) -> None:
        """Once the daemon serves: the admin signs in and adds ``people`` (POST /users),
        then each signs in (POST /auth/login) and keeps the token."""
        with api_client(api_url, timeout=60.0) as client:
            self.tokens[self.admin] = sign_in(client, self.admin, self.password)
            for name, (full_name, roles) in self.people.items():
                body = {"name": name, "full_name": full_name, "roles": list(roles),
                        "password": self.password, "reason": "staff of this cell"}  # fmt: skip
                answer = client.post("/users", json=body, headers=bearer(self.tokens[self.admin]))
                if answer.status_code != 201:
                    raise RuntimeError(f"adding user {name}: {answer.status_code} {answer.text}")
                self.tokens[name] = sign_in(client, name, self.password)

    def headers(self, name: str) -> dict[str, str]:
        """The ``Authorization`` header of ``name`` (signed in by ``hire``)."""
        return bearer(self.tokens[name])


def sign_in(client: httpx.Client, name: str, password: str) -> str:
    """POST /auth/login; the token."""
    answer = client.post("/auth/login", json={"name": name, "password": password})
    if answer.status_code != 200:
        raise RuntimeError(f"signing in as {name}: {answer.status_code} {answer.text}")
    return answer.json()["token"]  # type: ignore[no-any-return]


class DaemonProcess:
    """One daemon, started (and killed, and started again) as often as asked."""

    def __init__(
        self,
        site_file: Path,
        api_url: str,
        log_file: Path,
        *,
        log_level: str = "info",
        env: dict[str, str] | None = None,
    ) -> None:
        self.site_file = site_file
        self.api_url = api_url
        self.log_file = log_file
        self.log_level = log_level
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.started_at = 0.0  # time.time() of the last start

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn ``cellfab --log-json run --site SITE`` (returns at once)."""
        assert not self.alive, "the daemon is already running"
        self.starts += 1
        with self.log_file.open("ab") as log:
            log.write(f"# start {self.starts}\n".encode())
        log = self.log_file.open("ab")
        try:
            self.started_at = time.time()
            args = ["--log-json", "--log-level", self.log_level, "run", "--site"]
            self.proc = subprocess.Popen(
                [CELLFAB, *args, str(self.site_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **(self.env or {})},
            )
        finally:
            log.close()

    def wait_ready(self, limit: float = 60.0) -> dict[str, Any]:
        """Poll ``/health`` until it answers 200 (its body); DaemonExited if the process
        ends first, TimeoutError after ``limit`` seconds (a hang guard)."""
        deadline = time.monotonic() + limit
        with api_client(self.api_url, timeout=2.0) as client:
            while True:
                if not self.alive:
                    raise DaemonExited(
                        f"cellfab run exited with status {self.returncode()} before it "
                        f"served; its log ends:\n{self.log_tail()}"
                    )
                try:
                    answer = client.get("/health")
                    if answer.status_code == 200:
                        return answer.json()  # type: ignore[no-any-return]
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cellfab run did not serve within {limit:g} s")
                time.sleep(0.02)

    def kill(self) -> int:
        """kill -9 and reap; returns the exit status (-9)."""
        assert self.proc is not None, "not started"
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(30)

    def stop(self, limit: float = 30.0) -> int:
        """SIGTERM (a clean stop) and reap; kill -9 after ``limit`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return self.returncode()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            return self.kill()

    def returncode(self) -> int:
        return 0 if self.proc is None or self.proc.returncode is None else self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
