"""Background tasks of a twin, owned: referenced, logged when they crash, ended at stop.

This module owns ``TaskOwner``. A twin starts its background work (a ticker, an answer
loop, one worker per client connection) through it instead of a bare
``asyncio.create_task``, so that

* every task stays referenced until it ends (the loop keeps only weak references);
* a task that ends with an exception is logged at once, with its traceback (a twin
  that silently stops answering is the worst kind of test failure);
* ``stop()`` cancels and awaits every task still running, then raises the first crash
  seen, so the test or command that stops the twin fails visibly too.

A task that ends normally or is cancelled is simply forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("cellfab.sim")


class TaskOwner:
    """The background tasks of one twin (see the module doc)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._crash: BaseException | None = None

    def start(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.owner}: {name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("twin task crashed", twin=self.owner, task=task.get_name(), exc_info=exc)
            if self._crash is None:
                self._crash = exc

    def __len__(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        """Cancel and await every task; raise the first crash (once)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # a crash is recorded by _done and raised below
        crash, self._crash = self._crash, None
        if crash is not None:
            raise crash
