"""The change stream's state: the hub that turns notifications into changes for subscribers.

The WebSocket handler (``web.stream``) registers subscribers here; the hub reads the rows a
notification names (``storage.changes``) and offers them to every subscriber's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import WSCloseCode, web

from exporter.domain.subscription import Event, Filter, Subscribe, matches
from exporter.features.core import DATABASE, LISTENER, SUPERVISOR
from exporter.storage.changes import Change, ChangeFeed, Notice

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_notice = msgspec.json.Decoder(Notice)
TRY_AGAIN_LATER = 1013


class Subscriber:
    """One WebSocket client: what it wants and a bounded queue of what it has yet to get."""

    def __init__(self, ws: web.WebSocketResponse, sub: Subscribe, queue_size: int) -> None:
        self.ws = ws
        self.channels = set(sub.channels)
        self.filter: Filter = sub.filter
        self.queue: asyncio.Queue[Change] = asyncio.Queue(queue_size)
        self.replayed: dict[str, int] = {}
        self.overflowed = False
        self.writer: asyncio.Task[None] | None = None

    def offer(self, change: Change) -> None:
        """Queue a change if wanted; a full queue means the client cannot keep up."""
        if change.channel not in self.channels or self.overflowed:
            return
        if not matches(self.filter, change.channel, change.data):
            return
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            # disconnect this client rather than slow the others or grow without bound
            self.overflowed = True
            if self.writer is not None:
                self.writer.cancel()

    async def send(self, change: Change) -> None:
        """Send one change, unless replay already sent it."""
        if change.cursor <= self.replayed.get(change.channel, 0):
            return
        event = Event(change.channel, change.op, str(change.cursor), change.data)
        await self.ws.send_bytes(_encoder.encode(event))

    async def write(self) -> None:
        """Send queued changes until cancelled; after an overflow, close with 1013."""
        try:
            while True:
                await self.send(await self.queue.get())
        except asyncio.CancelledError:
            if not self.overflowed:
                raise
            await self.ws.close(code=TRY_AGAIN_LATER, message=b"client too slow")


class Hub:
    """Turns notifications into changes and offers them to every subscriber."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self.subscribers: set[Subscriber] = set()
        self.sockets: set[web.WebSocketResponse] = set()
        self._notices: asyncio.Queue[tuple[str, str]] = asyncio.Queue(10_000)
        self._alert_seen: dict[int, int] = {}

    def notify(self, channel: str, payload: str) -> None:
        """Listener callback: remember the notification if anybody listens to its channel."""
        if any(channel in s.channels for s in self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                self._notices.put_nowait((channel, payload))

    async def run(self) -> None:
        """Read the rows each notification names and fan them out."""
        while True:
            channel, payload = await self._notices.get()
            notice = _notice.decode(payload)
            changes = await self.feed.changes(channel, notice)
            for n, change in enumerate(changes, 1):
                if n % 64 == 0:
                    # let the writers drain, so a burst is not mistaken for a slow client
                    await asyncio.sleep(0)
                if channel == "system_alerts":
                    # one notification per statement may name an alert seen before
                    alert_id = change.data["id"]
                    if change.cursor <= self._alert_seen.get(alert_id, 0):
                        continue
                    self._alert_seen[alert_id] = change.cursor
                    if len(self._alert_seen) > 100_000:
                        self._alert_seen.clear()
                for subscriber in list(self.subscribers):
                    subscriber.offer(change)


HUB = web.AppKey("stream_hub", Hub)


async def replay(subscriber: Subscriber, feed: ChangeFeed, after: dict[str, int]) -> None:
    """Send a subscriber every change after its cursors, oldest first."""
    for channel, cursor in after.items():
        while True:
            changes = await feed.replay(channel, cursor)
            for change in changes:
                if matches(subscriber.filter, channel, change.data):
                    await subscriber.send(change)
                subscriber.replayed[channel] = cursor = change.cursor
            if len(changes) == 0 or len(changes) < 500:
                break


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB] = Hub(ChangeFeed(app[DATABASE]))
    unsubscribe = app[LISTENER].subscribe(hub.notify)
    yield
    unsubscribe()


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[HUB].sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def _run_hub(app: web.Application) -> Any:
    return app[HUB].run()


def setup(app: web.Application) -> None:
    """Install the hub and its lifetimes."""
    app.cleanup_ctx.append(_hub_ctx)
    app.cleanup_ctx.append(app[SUPERVISOR].service("stream-hub", _run_hub))
    app.on_shutdown.append(_close_sockets)
