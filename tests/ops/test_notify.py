"""sd_notify on a real AF_UNIX datagram socket: the messages, the watchdog interval, and
watchdog pings that come from the event loop (a blocked loop sends none)."""

from __future__ import annotations

import os
import socket
import time
import uuid

import anyio
import pytest

from daemon.ops.notify import Notifier, keep_alive, watchdog_interval
from tests.ops.notify_support import Listener, is_ping, parse

PING_INTERVAL = 0.2  # a watchdog of 0.2 s: a ping every 0.1 s


def test_ready_status_stopping_and_watchdog_are_datagrams_systemd_reads(
    notify_socket: Listener,
) -> None:
    notifier = Notifier(str(notify_socket.path))
    assert notifier.enabled
    assert notifier.status("replaying the journal")
    assert notifier.ready("serving http://127.0.0.1:8470;\n2 batches")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert notify_socket.drain() == [
        {"STATUS": "replaying the journal"},
        {"READY": "1", "STATUS": "serving http://127.0.0.1:8470; 2 batches"},  # one line
        {"WATCHDOG": "1"},
        {"STOPPING": "1"},
    ]
    assert notifier.sent == 4
    notifier.close()


def test_an_abstract_socket_name_starts_with_an_at_sign() -> None:
    name = f"cellfab-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        notifier = Notifier(f"@{name}")
        assert notifier.ready()
        assert parse(sock.recv(4096)) == {"READY": "1"}
        notifier.close()
    finally:
        sock.close()


def test_outside_systemd_nothing_is_sent_and_nothing_fails(tmp_path: os.PathLike[str]) -> None:
    quiet = Notifier.from_environment({})
    assert not quiet.enabled
    assert not quiet.ready() and not quiet.watchdog() and quiet.sent == 0
    nobody = Notifier(f"{tmp_path}/nobody-listens")  # systemd went away: logged, not raised
    assert nobody.enabled and not nobody.ready() and nobody.sent == 0
    odd = Notifier("vsock:2:1234")  # a form this daemon does not speak
    assert not odd.enabled and not odd.ready()


@pytest.mark.parametrize(
    ("environ", "seconds"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
    ],
)
def test_watchdog_interval_from_the_environment(
    environ: dict[str, str], seconds: float | None
) -> None:
    assert watchdog_interval(environ) == seconds


async def test_watchdog_pings_come_from_the_event_loop_a_blocked_loop_sends_none(
    notify_socket: Listener,
) -> None:
    notifier = Notifier(str(notify_socket.path))
    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_alive, notifier, PING_INTERVAL)
        await anyio.to_thread.run_sync(notify_socket.until, is_ping, "a first ping")
        # the loop is blocked from here to the second drain (no await in between): a
        # ping sent by a thread would arrive while it sleeps ten ping periods
        notify_socket.drain()
        time.sleep(PING_INTERVAL * 5)  # noqa: ASYNC251 - the stall under test
        assert notify_socket.drain() == []
        await anyio.to_thread.run_sync(notify_socket.until, is_ping, "pings after the stall")
        tg.cancel_scope.cancel()


async def test_pings_stop_while_the_daemon_is_unhealthy_and_come_back(
    notify_socket: Listener,
) -> None:
    notifier = Notifier(str(notify_socket.path))
    why = [""]
    sick_rounds = [0]
    three_sick_rounds = anyio.Event()

    def healthy() -> str:  # keep_alive asks once per round
        if why[0]:
            sick_rounds[0] += 1
            if sick_rounds[0] == 3:
                three_sick_rounds.set()
        return why[0]

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_alive, notifier, PING_INTERVAL, healthy)
        await anyio.to_thread.run_sync(notify_socket.until, is_ping, "a ping while healthy")
        why[0] = "the journal cannot be written: disk full"
        await three_sick_rounds.wait()
        got = notify_socket.drain()  # pings of healthy rounds, then the first sick one's
        status = [i for i, m in enumerate(got) if "STATUS" in m]
        assert [got[i]["STATUS"] for i in status] == [
            "unhealthy: the journal cannot be written: disk full; waiting for the "
            "watchdog to restart it"
        ]
        assert not any(is_ping(m) for m in got[status[0] :])  # three sick rounds: no ping
        why[0] = ""
        await anyio.to_thread.run_sync(notify_socket.until, is_ping, "pings once healthy")
        tg.cancel_scope.cancel()
