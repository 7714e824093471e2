"""The change stream's state: one hub per replica tailing the change log, and subscribers.

The hub reads released changes (``storage.changes``) after its position whenever the log's
triggers notify, every ``POLL`` seconds anyway, and at once after the listener reconnects, so
nothing committed while the LISTEN connection was down waits for the next write. It offers
each change to every subscriber. A subscriber is transport-free: the WebSocket
(``web.stream``) and Server-Sent Events (``web.events``) give it a ``send`` callable.
A subscriber with a cursor replays from the log until it has reached the hub's position, then
joins the hub in the same step (no await in between), so it skips nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from exporter.domain.subscription import Cursor, Event, Filter, Reset, format_cursor, matches
from exporter.features.core import DATABASE, LISTENER, SUPERVISOR
from exporter.storage.changes import PAGE, WAKE_CHANNEL, Change, ChangeFeed, Standing

log = logging.getLogger(__name__)

TASK = "stream-hub"
#: seconds between two reads of the log when no notification came (the safety net)
POLL = 1.0
TRY_AGAIN_LATER = 1013
INTERNAL_ERROR = 1011
GOING_AWAY = 1001
Message = Event | Reset
Send = Callable[[Message], Awaitable[None]]


class Closed(Exception):
    """The subscription ends: ``code`` is the WebSocket close code (1013: resume later with
    your cursor; 1011: the server could not read the log)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FutureCursor(ValueError):
    """A cursor this service never released."""


class Subscriber:
    """One client: what it wants, the changes it has yet to get, and the last it got."""

    def __init__(self, channels: list[str], flt: Filter, queue_size: int, send: Send) -> None:
        self.channels = frozenset(channels)
        self.filter = flt
        self.queue_size = queue_size
        self.send = send
        self.queue: deque[Change] = deque()
        #: the client has every change up to here (sent, or not for it)
        self.position: Cursor = (0, 0)
        self.failure: Closed | None = None
        self._wake = asyncio.Event()
        #: the writer's task while it is blocked in ``send`` (fail() cancels it)
        self._sending: asyncio.Task[Any] | None = None

    def offer(self, change: Change) -> None:
        """Queue a change if wanted; a full queue means the client cannot keep up."""
        if self.failure is not None or change.channel not in self.channels:
            return
        if not matches(self.filter, change.channel, change.data):
            return
        if len(self.queue) >= self.queue_size:
            # close this client rather than slow the others or grow without bound
            self.fail(Closed(TRY_AGAIN_LATER, "client too slow: resume with your last cursor"))
            return
        self.queue.append(change)
        self._wake.set()

    def fail(self, failure: Closed) -> None:
        """End the subscription: its writer raises ``failure``, at once even if it is blocked
        sending to a client that does not read."""
        if self.failure is None:
            self.failure = failure
            self.queue.clear()
            if self._sending is not None:
                self._sending.cancel()
        self._wake.set()

    async def deliver(self, change: Change) -> None:
        """Send a change unless the client has it already; it is the client's position then."""
        if change.cursor <= self.position:
            return
        if change.channel in self.channels and matches(self.filter, change.channel, change.data):
            await self.send(
                Event(change.channel, change.op, format_cursor(change.cursor), change.data)
            )
        self.position = change.cursor

    async def write(self) -> None:
        """Send queued changes until the subscription fails (raises Closed)."""
        task = asyncio.current_task()
        while True:
            if self.failure is not None:
                raise self.failure
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            change = self.queue.popleft()
            self._sending = task
            try:
                await self.deliver(change)
            except asyncio.CancelledError:
                # fail() interrupted a send the client does not read: end with its reason
                if self.failure is None or task is None or task.uncancel() > 0:
                    raise
                raise self.failure from None
            finally:
                self._sending = None


class Hub:
    """Tails the change log for this replica and offers every change to every subscriber."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self.subscribers: set[Subscriber] = set()
        #: open WebSockets, subscribed or not (closed at shutdown)
        self.sockets: set[web.WebSocketResponse] = set()
        #: every change up to here was offered (None until the first read)
        self.position: Cursor | None = None
        self._wake = asyncio.Event()
        self._started = asyncio.Event()

    def wake(self, *_: object) -> None:
        """Read the log now (a notification came, or the listener reconnected)."""
        self._wake.set()

    async def started(self) -> Cursor:
        """The hub's position, once it has one."""
        await self._started.wait()
        assert self.position is not None
        return self.position

    async def run(self, supervisor: Any = None) -> None:
        """Read and offer released changes until cancelled; a failed read closes every
        subscriber with 1011 (they resume with their cursors) and raises."""
        if self.position is None:
            self.position = await self.feed.head()
            self._started.set()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception:
                for subscriber in list(self.subscribers):
                    subscriber.fail(Closed(INTERNAL_ERROR, "could not read the change log"))
                raise
            if supervisor is not None:
                supervisor.succeeded(TASK)

    async def catch_up(self) -> None:
        """Offer every change released after the hub's position."""
        assert self.position is not None
        while True:
            changes = await self.feed.after(self.position)
            for n, change in enumerate(changes, 1):
                for subscriber in list(self.subscribers):
                    subscriber.offer(change)
                self.position = change.cursor
                if n % 64 == 0:
                    # let the writers drain, so a burst is not mistaken for a slow client
                    await asyncio.sleep(0)
            if len(changes) < PAGE:
                return


HUB = web.AppKey("stream_hub", Hub)


async def resolve(hub: Hub, after: Cursor | None) -> tuple[Cursor | None, Reset | None]:
    """Where a new subscription starts: after its cursor, or (None) at the hub's position,
    with a reset message when changes after the cursor were pruned. Raises FutureCursor for
    a cursor this service never released."""
    position = await hub.started()
    if after is None:
        return None, None
    standing = await hub.feed.standing(after)
    if standing is Standing.FUTURE:
        raise FutureCursor("the cursor is ahead of every change this service released")
    if standing is Standing.PRUNED:
        message = "changes after your cursor are no longer kept: reload, then follow on"
        return None, Reset(format_cursor(position), message)
    return after, None


async def follow(hub: Hub, subscriber: Subscriber, after: Cursor | None) -> None:
    """Replay what the subscriber missed after ``after`` (None: start at the hub's position),
    join the hub, and send until the subscription fails (raises Closed: the caller ends the
    transport with its code)."""
    position = await hub.started()
    subscriber.position = after if after is not None else position
    channels = sorted(subscriber.channels)
    try:
        # catch up from the log, queueing nothing meanwhile (a long replay cannot overflow)
        while len(await _replay(hub, subscriber, channels)) == PAGE:
            pass
        # join the hub: it offers everything after its position now; read the log up to
        # there (a moment's worth), and the queue skips what the replay already sent
        joined = hub.position
        assert joined is not None
        hub.subscribers.add(subscriber)
        while subscriber.position < joined:
            if len(await _replay(hub, subscriber, channels)) < PAGE:
                # everything up to ``joined`` was released before that read: nothing is left
                subscriber.position = max(subscriber.position, joined)
        await subscriber.write()
    except (Closed, ConnectionError, asyncio.CancelledError):
        raise  # (a ConnectionError: the client went away; its transport ends quietly)
    except Exception as exc:
        log.warning("stream replay failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        raise Closed(INTERNAL_ERROR, "could not read the change log") from exc
    finally:
        hub.subscribers.discard(subscriber)


async def _replay(hub: Hub, subscriber: Subscriber, channels: list[str]) -> list[Change]:
    """Send the subscriber the next page of the log after its position."""
    changes = await hub.feed.after(subscriber.position, channels)
    for change in changes:
        await subscriber.deliver(change)
    return changes


async def _close_sockets(app: web.Application) -> None:
    hub = app[HUB]
    for subscriber in list(hub.subscribers):
        subscriber.fail(Closed(GOING_AWAY, "server shutdown"))
    for ws in list(hub.sockets):
        await ws.close(code=GOING_AWAY, message=b"server shutdown")


def _run_hub(app: web.Application) -> Any:
    return app[HUB].run(app[SUPERVISOR])


def setup(app: web.Application) -> None:
    """Install the hub and its lifetimes (it listens from the listener's first connect)."""
    hub = app[HUB] = Hub(ChangeFeed(app[DATABASE]))
    listener = app[LISTENER]
    listener.subscribe_channel(WAKE_CHANNEL, hub.wake)
    listener.on_connect(hub.wake)
    app.cleanup_ctx.append(app[SUPERVISOR].service(TASK, _run_hub, wait=_db_ready))
    app.on_shutdown.append(_close_sockets)


async def _db_ready(app: web.Application) -> None:
    await app[DATABASE].wait_ready()
