"""One connection to a shuttle: the OPC UA steps of the driver's link life cycle.

Owns what ``drivers._link.Link`` asks of a wire (``connect``, ``serve``,
``disconnect``) and the request plumbing every call goes through:

* connect: a new asyncua client with the configured security
  (``drivers.opcua.security``), a session, discovery (``drivers.opcua.space``), one
  subscription, then the full state read (``_read_snapshot``). On a reconnect it then
  emits, through the event hub, what changed since the link was lost
  (``drivers.opcua.resync.diff_events``) and opens the intake's gate; the Link emits
  ``ConnectionRestored`` right after, with no await in between.
* Subscriptions: publishing interval 100 ms by default (within the ICD's 100 ms..1 s),
  one monitored item per followed variable, sampling interval 0, server queue
  ``settings.queue_size`` (DiscardOldest) for the variables the ICD reports in full, so
  the server keeps every change between two publishes. asyncua's iterator queue is not
  used: each publish is handed synchronously, in order, to ``drivers.opcua.intake``.
* Losses: the transport closing, asyncua's watchdog probe failing (a stalled server), a
  request answering with a connection error or timing out, and whatever the intake
  calls a loss. ``_lost`` reports each once per connection generation; the cache as
  consumers saw it is kept then, for the resync diff.
* Requests: ``call``/``call_many``/``read`` raise ``CommunicationLost`` at once while
  not connected; a failure on the wire becomes a typed error (``drivers.opcua.errors``)
  and, when it is a loss, marks the link lost. Nothing is ever re-sent here. At most
  ``settings.max_in_flight`` requests are on the wire at once; the rest wait their turn
  in order, off the clock (the request timeout starts when a request is sent), and fail
  with ``CommunicationLost`` unsent if the link is lost while they wait. Without the
  bound, 256 batches reconciling after a restart sent 256 calls at once: the server
  answered the last ones, and asyncua's watchdog probe queued behind them, after the
  timeouts, and the link was declared lost over and over (bench.recovery, P5).
  ``call_shared`` is for read-only calls (GetResult): those waiting for a slot when one
  frees go out together in one Call request (at most SHARED_CALLS methods), each
  caller getting its own results; the server's cost is mostly per request, so 256
  GetResults cost what 8 did (97 ms instead of 347 ms on the twin). A failure of the
  shared request is each caller's failure, under its own operation's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import structlog
from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from drivers._link import EventHub, Link
from drivers.base import CommunicationLost, InstrumentError, InstrumentTimeout, InvalidAnswer
from drivers.opcua.errors import SecurityRejected, check_status, translate
from drivers.opcua.intake import Intake
from drivers.opcua.resync import diff_events
from drivers.opcua.security import SecurityConfig, apply_security
from drivers.opcua.settings import OpcUaSettings
from drivers.opcua.space import Key, Space, discover
from drivers.opcua.values import BadValue, check, check_capabilities

log = structlog.get_logger("cellfab.drivers.opcua")
T = TypeVar("T")


class _Subscription(Subscription):
    """asyncua Subscription that hands every publish straight to the driver, in order.

    asyncua's iterator mode would put each notification into a bounded queue that drops
    the oldest on overflow; its handler mode spawns a task per notification. Here the
    publish callback itself feeds the intake synchronously: nothing is dropped or
    reordered, and the cost per notification is one cache update.
    """

    def __init__(
        self,
        session: Any,
        params: ua.CreateSubscriptionParameters,
        sink: Callable[[ua.NotificationMessage], None],
    ) -> None:
        super().__init__(session, params, handler=cast(Any, _NO_HANDLER))
        self._sink = sink

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        self._sink(publish_result.NotificationMessage)


class _NoHandler:
    pass


_NO_HANDLER: Final = _NoHandler()


_UNSENT: Final = "connection lost before it was sent"
SHARED_CALLS: Final = 32  # methods in one shared Call request (servers limit them)

MethodCall = tuple[ua.NodeId, ua.NodeId, list[ua.Variant]]


@dataclass(eq=False)
class _Shared:
    """One caller's read-only calls waiting to go out in a shared Call request."""

    operation: str
    gen: int
    calls: list[MethodCall]
    answer: asyncio.Future[list[ua.CallMethodResult]]
    taken: bool = False


class Connection:
    """The wire of one ``OpcUaShuttle`` (``drivers._link.Wire``)."""

    def __init__(
        self,
        name: str,
        url: str,
        security: SecurityConfig,
        settings: OpcUaSettings,
        hub: EventHub,
    ) -> None:
        self.name = name
        self.url = url
        self.security = security
        self.settings = settings
        self.hub = hub
        self.link: Link | None = None  # set by the driver once its Link exists
        self.intake = Intake(name, hub.emit, self._intake_lost)
        self.client: Client | None = None
        self.space: Space | None = None  # the last discovered; kept while lost
        self._sub: _Subscription | None = None
        self._gen = 0
        # The cache as consumers last saw it (taken when the gate closed on a loss): every
        # resync attempt diffs against it, so an attempt that failed after filling the
        # cache, or late notifications of the lost subscription, hide no change.
        self._seen: dict[Key, Any] = {}
        self._failure: InstrumentError | None = None  # a loss seen while connecting
        self._slots = asyncio.Semaphore(settings.max_in_flight)  # requests on the wire
        self._shared: list[_Shared] = []  # read-only calls waiting for a shared request

    # ------------------------------------------------------------------ Wire
    async def connect(self) -> None:
        """New client, session, discovery, subscription, full read; then the resync diff."""
        self._close_gate()
        self._gen += 1
        gen = self._gen
        self._failure = None
        s = self.settings
        client = Client(
            self.url,
            timeout=s.request_timeout,
            watchdog_intervall=s.watchdog_interval,
            auto_reconnect=False,
        )
        client.name = client.description = f"cellfab {self.name}"
        client.session_timeout = int(s.session_timeout * 1000)
        client.connection_lost_callback = self._lost_callback(gen)
        self.client = client
        try:
            async with asyncio.timeout(s.connect_timeout):
                await apply_security(client, self.security, self.name)
                await client.connect()
                space = await discover(client, self.name)
                self.space = space
                await self._subscribe(client, space, gen)
                await self._read_snapshot(client, space)
        except BaseException as exc:
            await self.disconnect()
            if isinstance(exc, asyncio.CancelledError):
                raise
            err = translate(self.name, "connect", exc)
            if isinstance(err, SecurityRejected):
                log.error("shuttle refused", instrument=self.name, error=str(err))
            raise err from (None if isinstance(exc, TimeoutError) else exc)
        for event in diff_events(self.name, self._seen, self.intake.values):
            self.hub.emit(event)
        self.intake.gate_open = True

    async def serve(self) -> None:
        assert self.link is not None
        await self.link.wait_lost()

    async def disconnect(self) -> None:
        """Close the client (never raises); a closing driver also shuts the gate."""
        client, self.client = self.client, None
        self._sub = None
        self.intake.reset({})
        if client is None:
            return
        client.connection_lost_callback = None
        try:
            async with asyncio.timeout(min(1.0, self.settings.request_timeout)):
                await client.disconnect()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and not isinstance(exc, TimeoutError):
                client.disconnect_socket()
                raise
        finally:
            client.disconnect_socket()
            _cancel_leftovers(client)

    def forget(self) -> None:
        """The driver closed: no event until the next connect, nothing to diff against."""
        self.intake.gate_open = False
        self._seen = {}

    # ------------------------------------------------------------------ losses
    def _close_gate(self) -> None:
        if self.intake.gate_open:
            self.intake.gate_open = False
            self._seen = dict(self.intake.values)

    def _lost(
        self, reason: str, gen: int, error: type[InstrumentError] = CommunicationLost
    ) -> None:
        """Report a loss of connection generation ``gen`` (once; older ones are ignored)."""
        if gen != self._gen:
            return
        if self.intake.gate_open:
            self._close_gate()
            assert self.link is not None
            self.link.lost(reason)
        elif self._failure is None:  # while connecting: that attempt fails with it
            self._failure = error(self.name, "connect", reason)

    def _intake_lost(self, reason: str, error: type[InstrumentError] = CommunicationLost) -> None:
        self._lost(reason, self._gen, error)

    def _lost_callback(self, gen: int) -> Callable[[Exception], Any]:
        async def on_lost(exc: Exception) -> None:
            self._lost(f"connection lost: {exc!r}", gen)

        return on_lost

    def _on_publish(self, msg: ua.NotificationMessage, gen: int) -> None:
        if gen != self._gen:
            return  # a late publish of a subscription already replaced
        try:
            self.intake.on_publish(msg)
        except Exception as exc:  # a bug or a malformed notification: resync, never go stale
            log.exception("notification handling failed", instrument=self.name)
            self._lost(f"notification handling failed: {exc!r}", gen)

    # ------------------------------------------------------------------ connect steps
    async def _subscribe(self, client: Client, space: Space, gen: int) -> None:
        s = self.settings
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=s.publishing_interval_ms,
            RequestedLifetimeCount=max(
                30, int(3 * s.session_timeout * 1000 / s.publishing_interval_ms)
            ),
            RequestedMaxKeepAliveCount=max(1, int(1000 / s.publishing_interval_ms)),
            MaxNotificationsPerPublish=0,  # no limit
            PublishingEnabled=True,
            Priority=0,
        )
        sub = _Subscription(client.uaclient.session, params, lambda m: self._on_publish(m, gen))
        await sub.init()
        self._sub = sub
        planned = space.items()
        self.intake.reset(dict(enumerate(planned, start=1)))
        requests = [
            ua.MonitoredItemCreateRequest(
                ItemToMonitor=ua.ReadValueId(NodeId=item.node, AttributeId=ua.AttributeIds.Value),
                MonitoringMode=ua.MonitoringMode.Reporting,
                RequestedParameters=ua.MonitoringParameters(
                    ClientHandle=handle,
                    SamplingInterval=0.0,
                    QueueSize=s.merged_queue_size if item.mergeable else s.queue_size,
                    DiscardOldest=True,
                ),
            )
            for handle, item in enumerate(planned, start=1)
        ]
        results = await sub.create_monitored_items(requests)
        for item, res in zip(planned, results, strict=True):
            if isinstance(res, ua.StatusCode):
                raise InstrumentError(
                    self.name, "subscribe", f"cannot monitor {'/'.join(item.key)}: {res.name}"
                )

    async def _read_snapshot(self, client: Client, space: Space) -> None:
        """Full state: initial values of every item, then one Read used as a barrier.

        The cache is only ever written by the ordered notification stream, so it never
        goes back in time. The Read proves the stream is complete: every followed
        variable whose Read value the stream has not shown yet is waited for (each
        change of a variable the ICD reports in full will come).
        """
        intake = self.intake
        await self._wait_for(lambda: intake.has_initial_values, "initial values")
        items = intake.items
        caps = [u.capabilities_node for u in space.units.values()]
        params = ua.ReadParameters(
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[
                ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value)
                for n in [*(i.node for i in items), *caps]
            ],
        )
        intake.begin_barrier()
        try:
            dvs = await client.uaclient.read(params)
            if len(dvs) != len(params.NodesToRead):
                raise InvalidAnswer(self.name, "read state", f"{len(dvs)} values answered")
            pending: dict[Key, Any] = {}
            for item, dv in zip(items, dvs[: len(items)], strict=True):
                if dv.StatusCode is not None:
                    check_status(self.name, f"read {'/'.join(item.key)}", dv.StatusCode)
                if item.mergeable:
                    continue
                value = self._checked(item.key, dv, "read state")
                if intake.values.get(item.key, _MISSING) != value and not intake.saw(
                    item.key, value
                ):
                    pending[item.key] = value
            if pending:
                log.info("waiting for in-flight changes", instrument=self.name, n=len(pending))
                await self._wait_for(
                    lambda: all(intake.saw(k, v) for k, v in pending.items()),
                    "the changes the Read showed",
                    limit=max(2.0, 20 * self.settings.publishing_interval_ms / 1000),
                )
        finally:
            intake.end_barrier()
        for unit, dv in zip(space.units.values(), dvs[len(items) :], strict=True):
            try:
                unit.capabilities = check_capabilities(_value(dv))
            except ValueError as exc:
                raise InvalidAnswer(self.name, "read state", f"{unit.unit_id}: {exc}") from None

    async def _wait_for(
        self, condition: Callable[[], bool], what: str, limit: float | None = None
    ) -> None:
        """Wait (publish by publish) until ``condition``; InstrumentTimeout after ``limit``."""
        deadline = time.monotonic() + (limit or self.settings.connect_timeout)
        while not condition():
            if self._failure is not None:
                raise self._failure
            if time.monotonic() > deadline:
                raise InstrumentTimeout(self.name, "connect", f"no notification of {what}")
            self.intake.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self.intake.changed.wait()

    def _checked(self, key: Key, dv: ua.DataValue, operation: str) -> Any:
        try:
            return check(key, _value(dv))
        except BadValue as exc:
            raise InvalidAnswer(self.name, operation, str(exc)) from None

    # ------------------------------------------------------------------ requests
    def require(self, operation: str) -> tuple[Client, Space, int]:
        """The live client, its address space and generation; CommunicationLost if none."""
        assert self.link is not None
        self.link.require_connected(operation)
        client, space = self.client, self.space
        if client is None or space is None:
            raise CommunicationLost(self.name, operation, "not connected")
        return client, space, self._gen

    async def _request(self, operation: str, gen: int, send: Callable[[], Awaitable[T]]) -> T:
        """Send one request when a slot is free and await its answer; any failure becomes
        a typed error (and a loss when it is one)."""
        async with self._slots:
            return await self._send(operation, gen, send)

    async def _send(self, operation: str, gen: int, send: Callable[[], Awaitable[T]]) -> T:
        """Send now (a slot is held) and await the answer, as ``_request`` says."""
        if gen != self._gen or self.client is None:  # lost while waiting: never sent
            raise CommunicationLost(self.name, operation, _UNSENT)
        try:
            async with asyncio.timeout(self.settings.request_timeout + 1.0):
                return await send()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            err = translate(self.name, operation, exc)
            if isinstance(err, CommunicationLost):
                self._lost(f"{operation}: {err.detail}", gen)
            raise err from exc

    async def call_shared(
        self, operation: str, calls: Sequence[MethodCall]
    ) -> list[ua.CallMethodResult]:
        """Read-only calls, sent in one Call request with those of every other caller
        waiting for a slot when one frees; the results unchecked, one per call."""
        _client, _space, gen = self.require(operation)
        loop = asyncio.get_running_loop()
        mine = _Shared(operation, gen, list(calls), loop.create_future())
        self._shared.append(mine)
        try:
            async with self._slots:
                if not mine.taken:  # nobody took it along: send what waits, mine first
                    await self._send_shared(mine)
            return await mine.answer
        finally:
            if not mine.taken:
                self._shared.remove(mine)
            elif not mine.answer.done():
                mine.answer.cancel()  # its caller is gone: no result to hand over

    async def _send_shared(self, mine: _Shared) -> None:
        """Send ``mine`` and what else waits (FIFO, up to SHARED_CALLS methods) in one Call
        request; hand each caller its results or its error."""
        batch, size = [mine], len(mine.calls)
        for other in self._shared:
            if other is not mine and size + len(other.calls) <= SHARED_CALLS:
                batch.append(other)
                size += len(other.calls)
        for entry in batch:
            entry.taken = True
            self._shared.remove(entry)
        current = []
        for entry in batch:
            if entry.gen == self._gen:
                current.append(entry)
            else:  # queued before a loss: never sent, as in _request
                _settle(entry, CommunicationLost(self.name, entry.operation, _UNSENT))
        if not current:
            return
        lead = current[0]
        requests = _method_requests([call for entry in current for call in entry.calls])
        try:
            results = await self._send(lead.operation, lead.gen, lambda: self._call(requests))
            self._check_count(lead.operation, results, len(requests))
        except InstrumentError as exc:
            for entry in current:
                _settle(entry, type(exc)(self.name, entry.operation, exc.detail))
            return
        except BaseException as exc:  # cancelled: the others' outcome is unknown
            for entry in current:
                if entry is mine:
                    entry.answer.cancel()
                else:
                    why = f"the request carrying it was cancelled ({exc!r})"
                    _settle(entry, CommunicationLost(self.name, entry.operation, why))
            raise
        at = 0
        for entry in current:
            if not entry.answer.done():
                entry.answer.set_result(results[at : at + len(entry.calls)])
            at += len(entry.calls)

    async def _call(self, requests: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        assert self.client is not None  # _send checked it, with no await since
        return cast(list[ua.CallMethodResult], await self.client.uaclient.call(requests))

    def _check_count(self, operation: str, results: object, n: int) -> None:
        if not isinstance(results, list) or len(results) != n:
            raise InvalidAnswer(self.name, operation, "the Call answered another number of results")

    async def call_many(
        self, operation: str, calls: Sequence[MethodCall]
    ) -> list[ua.CallMethodResult]:
        """One Call request of several methods; the results unchecked, one per call."""
        _client, _space, gen = self.require(operation)
        requests = _method_requests(calls)
        results = await self._request(operation, gen, lambda: self._call(requests))
        self._check_count(operation, results, len(requests))
        return results

    async def call(
        self, operation: str, obj: ua.NodeId, method: ua.NodeId, args: list[ua.Variant]
    ) -> list[Any]:
        """One method call; its output argument values, or the typed error of its status."""
        res = (await self.call_many(operation, [(obj, method, args)]))[0]
        self.check_call(operation, res)
        return [v.Value for v in res.OutputArguments or []]

    def check_call(self, operation: str, res: ua.CallMethodResult) -> None:
        bad_args = [
            f"argument {i}: {sc.name}"
            for i, sc in enumerate(res.InputArgumentResults or [])
            if not sc.is_good()
        ]
        check_status(self.name, operation, res.StatusCode, "; ".join(bad_args))

    async def read(self, operation: str, keys: Sequence[tuple[Key, ua.NodeId]]) -> list[Any]:
        """Read followed variables now; each value checked (``InvalidAnswer`` if garbage)."""
        client, _space, gen = self.require(operation)
        params = ua.ReadParameters(
            NodesToRead=[
                ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value) for _k, node in keys
            ]
        )
        dvs = await self._request(operation, gen, lambda: client.uaclient.read(params))
        if len(dvs) != len(keys):
            raise InvalidAnswer(self.name, operation, f"{len(dvs)} values for {len(keys)} reads")
        out = []
        for (key, _node), dv in zip(keys, dvs, strict=True):
            if dv.StatusCode is not None:
                check_status(self.name, operation, dv.StatusCode)
            out.append(self._checked(key, dv, operation))
        return out


def _method_requests(calls: Sequence[MethodCall]) -> list[ua.CallMethodRequest]:
    return [
        ua.CallMethodRequest(ObjectId=obj, MethodId=method, InputArguments=args)
        for obj, method, args in calls
    ]


def _settle(entry: _Shared, error: InstrumentError) -> None:
    if not entry.answer.done():
        entry.answer.set_exception(error)


class _Missing:
    pass


_MISSING: Final = _Missing()


def _value(dv: ua.DataValue) -> Any:
    v = dv.Value
    return None if v is None else v.Value


def _cancel_leftovers(client: Client) -> None:
    """Cancel the background tasks of an asyncua client whose ``disconnect`` did not run
    to its end. ``Client.disconnect`` cancels them one after another and then closes the
    session; cut short (our 1 s limit on a silent server, or a cancellation), it leaves
    the rest running on a closed socket: the publish loop logs a traceback every second
    forever, and the connection supervisor may even reconnect a client nobody owns.
    asyncua 2.1.0 (pinned, decision 0001) keeps them in these attributes."""
    tasks = [
        getattr(client, "_supervisor_task", None),
        getattr(client, "_stale_watchdog_task", None),
        getattr(client, "_renew_channel_task", None),
        getattr(client.uaclient, "_publish_task", None),
    ]
    for task in tasks:
        if task is not None and not task.done():
            task.cancel()
