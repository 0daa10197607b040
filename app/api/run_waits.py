"""Waiting on a run without polling: a long-poll (``/wait``) and server-sent events
(``/events``), both woken by the run tracker.

The tracker calls its listeners on whichever thread changed the run (an executor's reader,
a worker); ``call_soon_threadsafe`` hands the news to the event loop, where the handlers
wait on asyncio primitives and hold no worker thread. A wake-up that goes missing (a change
made by another process sharing the database) costs at most ``RECHECK_SECONDS``: the
handlers re-read the run that often anyway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Annotated

import msgspec
from anyio import to_thread
from litestar import Controller, get
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.api.auth import AnyRequest, provide_principal
from app.api.views import run_out
from app.models import Principal, RunOut
from app.services.runs import RunService
from app.tracker import ChangeKind

RECHECK_SECONDS = 1.0
# A client that stops reading while its run keeps logging is dropped once this much news
# waits for it, rather than buffered without end.
MAX_PENDING_EVENTS = 1_000
MAX_PENDING_BYTES = 4 * 1024 * 1024
# After the terminal status, log chunks still in flight (a reader draining the process's
# last output) get this long to arrive before the stream ends.
TAIL_GRACE_SECONDS = 0.3

_encode = msgspec.json.Encoder().encode


class _Inbox:
    """News from the tracker, bounded. ``push`` runs on any thread; the rest on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: collections.deque[tuple[ChangeKind, str]] = collections.deque()
        self._bytes = 0
        self.overflowed = False
        self._wake = asyncio.Event()
        self.stop: Callable[[], None] | None = None  # stops the news once overflowed

    def push(self, kind: ChangeKind, text: str) -> None:
        # RuntimeError: the loop closed (shutdown), nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._put, kind, text)

    def _put(self, kind: ChangeKind, text: str) -> None:
        if self.overflowed:
            return
        if len(self._items) >= MAX_PENDING_EVENTS or self._bytes > MAX_PENDING_BYTES:
            self.overflowed = True
            self._items.clear()
            if self.stop is not None:
                self.stop()
        else:
            self._items.append((kind, text))
            self._bytes += len(text)
        self._wake.set()

    async def wait(self, timeout: float) -> None:
        if self._items or self.overflowed:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    def take(self) -> list[tuple[ChangeKind, str]]:
        items = list(self._items)
        self._items.clear()
        self._bytes = 0
        return items


def _message(event: str, data: object) -> ServerSentEventMessage:
    return ServerSentEventMessage(event=event, data=_encode(data).decode())


class RunWaitController(Controller):
    path = "/api/v1/runs"
    tags = ["runs"]

    # Served from the event loop: the run is read through the loop's read-only connection
    # (an indexed read under WAL), and the wait itself is an asyncio one.
    @get(
        "/{run_id:str}/wait",
        summary="Answer with the run as soon as it ends, or when the timeout passes",
    )
    async def wait(
        self,
        request: AnyRequest,
        runs: RunService,
        run_id: str,
        timeout: Annotated[float, Parameter(ge=1, le=60)] = 30,
    ) -> RunOut:
        principal = provide_principal(request)  # one dependency: resolved without a task group
        run = runs.get(principal, run_id)
        if run.is_terminal:
            return run_out(run)
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def on_change(kind: ChangeKind, _: str) -> None:
            if kind == "status":
                loop.call_soon_threadsafe(woken.set)

        stop = runs.watch(principal, run_id, on_change)
        deadline = loop.time() + timeout
        try:
            while not run.is_terminal:
                left = deadline - loop.time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(RECHECK_SECONDS, left))
                woken.clear()
                run = runs.get(principal, run_id)
        finally:
            stop()
        return run_out(run)

    @get(
        "/{run_id:str}/events",
        summary="Server-sent events: the run's log as it grows, its status changes, its end",
    )
    async def events(self, principal: Principal, runs: RunService, run_id: str) -> ServerSentEvent:
        loop = asyncio.get_running_loop()
        inbox = _Inbox(loop)
        # Registering and reading the stored log must exclude a concurrent append (so
        # each chunk arrives once): a lock a writer may hold, so not on the loop's thread.
        stop, stored = await to_thread.run_sync(runs.watch_with_log, principal, run_id, inbox.push)
        inbox.stop = stop
        return ServerSentEvent(_stream(runs, principal, run_id, inbox, stored, stop))


async def _stream(
    runs: RunService,
    principal: Principal,
    run_id: str,
    inbox: _Inbox,
    stored: str,
    stop: Callable[[], None],
) -> AsyncGenerator[ServerSentEventMessage, None]:
    loop = asyncio.get_running_loop()
    try:
        if stored:
            yield _message("log", {"text": stored})
        run = runs.get(principal, run_id)
        last_status = run.status
        ending_at: float | None = None
        while True:
            if run.is_terminal and ending_at is None:
                ending_at = loop.time() + TAIL_GRACE_SECONDS
            timeout = RECHECK_SECONDS if ending_at is None else ending_at - loop.time()
            await inbox.wait(max(0.0, timeout))
            if inbox.overflowed:
                yield _message(
                    "error",
                    {"detail": "This client read the events too slowly and was dropped."},
                )
                return
            status_news = False
            for kind, text in inbox.take():
                if kind == "log":
                    yield _message("log", {"text": text})
                else:
                    status_news = True
            if status_news or ending_at is None:
                run = runs.get(principal, run_id)
            if run.status != last_status:
                last_status = run.status
                yield _message("status", run_out(run))
            if ending_at is not None and loop.time() >= ending_at:
                yield _message("end", run_out(run))
                return
    finally:
        stop()
