"""GET /api/v1/stream: the WebSocket of changes, in commit order, resumable with a cursor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from exporter.domain.subscription import Cursor, Subscribe, latest
from exporter.features.core import CONFIG
from exporter.features.stream import (
    HUB,
    INTERNAL_ERROR,
    Closed,
    FutureCursor,
    Message,
    Subscriber,
    follow,
    resolve,
)
from exporter.storage import StorageUnavailable
from exporter.storage.changes import CHANNELS
from exporter.web.api import API, Route
from exporter.web.tickets import TicketQuery

log = logging.getLogger(__name__)

MAX_MESSAGE = 65536
_encoder = msgspec.json.Encoder()
_subscribe = msgspec.json.Decoder(Subscribe)
_any = msgspec.json.Decoder()


class Refused(Exception):
    """A subscribe message the stream cannot serve: closed with 1008 and this message."""


async def _refuse(ws: web.WebSocketResponse, message: str) -> None:
    await ws.send_bytes(_encoder.encode({"type": "error", "message": message}))
    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=message.encode()[:120])


def parse_subscribe(data: str | bytes) -> tuple[Subscribe, Cursor | None]:
    """The subscription and its cursor (the latest in ``after``), or Refused saying why."""
    try:
        raw: Any = _any.decode(data)
    except msgspec.DecodeError as exc:
        raise Refused(f"the subscribe message is not JSON: {exc}") from exc
    channels = raw.get("channels") if isinstance(raw, dict) else None
    if isinstance(channels, list):
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise Refused(f"unknown channel {unknown[0]!r}; channels: {', '.join(CHANNELS)}")
    try:
        sub = _subscribe.decode(data)
    except msgspec.ValidationError as exc:
        raise Refused(f"invalid subscribe message: {exc}") from exc
    try:
        cursor = latest(list(sub.after.values()))
    except ValueError as exc:
        raise Refused(f"invalid cursor: {exc}") from exc
    return sub, cursor


async def _open(request: web.Request) -> web.WebSocketResponse:
    """The handshake (authentication happened in the middleware)."""
    config = request.app[CONFIG].web
    ws = web.WebSocketResponse(heartbeat=config.stream_heartbeat.seconds, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    return ws


async def stream(request: web.Request) -> web.WebSocketResponse:
    """Subscribe, replay what was missed after the cursor, then follow live changes."""
    ws = await _open(request)
    hub = request.app[HUB]
    hub.sockets.add(ws)
    try:
        await _subscription(request.app, ws)
    finally:
        hub.sockets.discard(ws)
    return ws


async def _subscription(app: web.Application, ws: web.WebSocketResponse) -> None:
    # an oversized message is closed with 1009 by aiohttp itself (max_msg_size)
    msg = await ws.receive(timeout=60)
    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return
    try:
        sub, cursor = parse_subscribe(msg.data)
        after, reset = await resolve(app[HUB], cursor)
    except (Refused, FutureCursor) as exc:
        await _refuse(ws, str(exc))
        return
    except StorageUnavailable:
        await ws.close(code=INTERNAL_ERROR, message=b"could not read the change log")
        return

    async def send(message: Message) -> None:
        await ws.send_bytes(_encoder.encode(message))

    subscriber = Subscriber(list(sub.channels), sub.filter, app[CONFIG].web.stream_queue_size, send)
    if reset is not None:
        await send(reset)
    following = asyncio.create_task(follow(app[HUB], subscriber, after))
    reading = asyncio.create_task(_until_closed(ws))
    try:
        await asyncio.wait({following, reading}, return_when=asyncio.FIRST_COMPLETED)
        if following.done():
            ended = following.exception()
            if isinstance(ended, Closed):
                await ws.close(code=ended.code, message=ended.reason.encode()[:120])
            elif ended is not None and not isinstance(ended, ConnectionError):
                raise ended
    finally:
        for task in (following, reading):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _until_closed(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends until it closes."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            break


def setup(app: web.Application) -> None:
    """Register the stream route (the hub is in features.stream)."""
    app[API].add(
        app,
        Route(
            "GET",
            "/api/v1/stream",
            stream,
            "WebSocket of changes (health_metrics, system_alerts, data_quality, status_changes)",
            "read",
            query=TicketQuery,
            messages=Subscribe,
            status=101,
            tags=("stream",),
            ticket=True,
        ),
    )


__all__ = ["CHANNELS", "setup"]
