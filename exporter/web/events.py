"""GET /api/v1/events: the stream's changes as Server-Sent Events, resumable with
``Last-Event-ID`` (the same subscriber, replay and order as the WebSocket)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from exporter.domain.subscription import Cursor, Event, Filter, parse_cursor
from exporter.features.core import CONFIG
from exporter.features.stream import HUB, Closed, FutureCursor, Message, Subscriber, follow, resolve
from exporter.storage.changes import CHANNELS
from exporter.web.api import API, Route
from exporter.web.errors import ApiError, Detail
from exporter.web.payload import parse_query

_encoder = msgspec.json.Encoder()


class EventsQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``channels`` and the list filters are comma-separated; ``after`` (or the
    ``Last-Event-ID`` header, which wins) is the last cursor received."""

    channels: str
    after: str | None = None
    service: str | None = None
    severity: str | None = None
    source: str | None = None
    status: str | None = None
    metric_type: str | None = None
    dataset: str | None = None
    #: from POST /api/v1/stream/tickets, for a web page's EventSource (no Authorization
    #: header); used up by this request, so a page reconnects with a new one and ``after``
    ticket: str | None = None


def _bad(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_query", "the query is not valid", [Detail(name, message)])


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v for v in value.split(",") if v]


def _subscription(request: web.Request) -> tuple[list[str], Filter, Cursor | None]:
    query = parse_query(request, EventsQuery)
    channels = _split(query.channels) or []
    if not channels:
        raise _bad("channels", f"name at least one channel: {', '.join(CHANNELS)}")
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        raise _bad("channels", f"unknown channel {unknown[0]!r}; channels: {', '.join(CHANNELS)}")
    raw = {
        "service": query.service,
        "severity": _split(query.severity),
        "source": query.source,
        "status": _split(query.status),
        "metric_type": query.metric_type,
        "dataset": query.dataset,
    }
    try:
        flt = msgspec.convert({k: v for k, v in raw.items() if v is not None}, Filter)
    except msgspec.ValidationError as exc:
        raise _bad("filter", str(exc)) from None
    last = request.headers.get("Last-Event-ID") or query.after
    name = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "after"
    try:
        cursor = None if last is None else parse_cursor(last)
    except ValueError as exc:
        raise _bad(name, str(exc)) from None
    return sorted(set(channels)), flt, cursor


async def events(request: web.Request) -> web.StreamResponse:
    """Replay what was missed after the cursor, then follow live changes, as
    ``text/event-stream`` (``id:`` the cursor, ``event:`` event or reset)."""
    app = request.app
    channels, flt, cursor = _subscription(request)
    try:
        after, reset = await resolve(app[HUB], cursor)
    except FutureCursor as exc:
        name = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "after"
        raise _bad(name, str(exc)) from None
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    lock = asyncio.Lock()

    async def write(chunk: bytes) -> None:
        async with lock:
            await resp.write(chunk)

    async def send(message: Message) -> None:
        kind = "event" if isinstance(message, Event) else "reset"
        data = _encoder.encode(message)
        await write(
            b"id: %s\nevent: %s\ndata: %s\n\n" % (message.cursor.encode(), kind.encode(), data)
        )

    subscriber = Subscriber(channels, flt, app[CONFIG].web.stream_queue_size, send)
    if reset is not None:
        await send(reset)
    else:
        await write(b": following\n\n")
    following = asyncio.create_task(follow(app[HUB], subscriber, after))
    beating = asyncio.create_task(_keep_alive(write, app[CONFIG].web.stream_heartbeat.seconds))
    try:
        await asyncio.wait({following, beating}, return_when=asyncio.FIRST_COMPLETED)
        if following.done():
            ended = following.exception()
            if isinstance(ended, Closed):
                # the browser reconnects by itself, with the last id it got
                with contextlib.suppress(ConnectionError):
                    await write(b": closed %d %s\n\n" % (ended.code, ended.reason.encode()))
            elif ended is not None and not isinstance(ended, ConnectionError):
                raise ended
    finally:
        for task in (following, beating):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return resp


async def _keep_alive(write: Callable[[bytes], Awaitable[None]], every: float) -> None:
    """A comment now and then: proxies keep the response open, and a gone client shows."""
    while True:
        await asyncio.sleep(every)
        await write(b": keep-alive\n\n")


def setup(app: web.Application) -> None:
    """Register the Server-Sent Events route."""
    app[API].add(
        app,
        Route(
            "GET",
            "/api/v1/events",
            events,
            "The stream as Server-Sent Events, resumable with Last-Event-ID",
            "read",
            query=EventsQuery,
            content_types=("text/event-stream",),
            tags=("stream",),
            ticket=True,
        ),
    )
