"""GET /api/v1/stream: the WebSocket of changes, fed by PostgreSQL notifications."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from exporter.domain.subscription import Subscribe, parse_cursor
from exporter.features.core import CONFIG
from exporter.features.stream import HUB, TRY_AGAIN_LATER, Subscriber, replay
from exporter.storage.changes import CHANNELS
from exporter.web.api import API, Route
from exporter.web.tickets import TicketQuery

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_subscribe = msgspec.json.Decoder(Subscribe)


async def _error(ws: web.WebSocketResponse, message: str) -> None:
    await ws.send_bytes(_encoder.encode({"type": "error", "message": message}))
    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=message.encode()[:120])


async def stream(request: web.Request) -> web.WebSocketResponse:
    """Subscribe, replay what was missed since the given cursors, then follow live changes."""
    app = request.app
    config = app[CONFIG].web
    ws = web.WebSocketResponse(heartbeat=config.stream_heartbeat.seconds, max_msg_size=65536)
    await ws.prepare(request)
    hub = app[HUB]
    hub.sockets.add(ws)
    subscriber: Subscriber | None = None
    try:
        msg = await ws.receive(timeout=60)
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return ws
        try:
            sub = _subscribe.decode(msg.data)
            after = {ch: parse_cursor(v) for ch, v in sub.after.items()}
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            await _error(ws, f"invalid subscribe message: {exc}")
            return ws
        subscriber = Subscriber(ws, sub, config.stream_queue_size)
        # live changes queue up while the replay runs; send() drops what replay covered
        hub.subscribers.add(subscriber)
        await replay(subscriber, hub.feed, {c: a for c, a in after.items() if c in sub.channels})
        if subscriber.overflowed:
            await ws.close(code=TRY_AGAIN_LATER, message=b"client too slow")
            return ws
        subscriber.writer = asyncio.create_task(subscriber.write())
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
        return ws
    finally:
        hub.sockets.discard(ws)
        if subscriber is not None:
            hub.subscribers.discard(subscriber)
            if subscriber.writer is not None:
                subscriber.writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await subscriber.writer


def setup(app: web.Application) -> None:
    """Register the stream route (the hub is in features.stream)."""
    app[API].add(
        app,
        Route(
            "GET",
            "/api/v1/stream",
            stream,
            "WebSocket of inserts and updates (health_metrics, system_alerts, data_quality)",
            "read",
            query=TicketQuery,
            messages=Subscribe,
            status=101,
            tags=("stream",),
            ticket=True,
        ),
    )


__all__ = ["CHANNELS", "setup"]
