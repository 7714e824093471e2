"""One LISTEN connection that fans PostgreSQL notifications out to subscribers.

It needs a direct (or session-mode) connection: behind a transaction pooler LISTEN "succeeds"
and nothing ever arrives. ``round_trip`` proves delivery by sending a notification through the
pool and waiting for it here, so readiness fails loudly in that case.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import asyncpg

from exporter.storage.database import connect_direct

log = logging.getLogger(__name__)

#: the contract's channels (the stream serves them)
CHANNELS = ("health_metrics", "system_alerts", "data_quality")
Callback = Callable[[str, str], None]


class Listener:
    """Keeps a dedicated connection listening on every subscribed channel, reconnecting."""

    def __init__(self, dsn: str, *, connect_timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.connected = False
        self.last_error: str | None = None
        self._channels: dict[str, list[Callback]] = {c: [] for c in CHANNELS}
        self._everything: set[Callback] = set()
        self._on_connect: list[Callable[[], None]] = []
        self._lost = asyncio.Event()
        self._up = asyncio.Event()
        # a channel of this process only, for the delivery check
        self.ping_channel = f"monitoring_ping_{uuid.uuid4().hex[:16]}"
        self._pings: dict[str, asyncio.Future[None]] = {}

    # ------------------------------------------------------------------ subscribers
    def subscribe_channel(self, channel: str, callback: Callback) -> None:
        """Call ``callback(channel, payload)`` for every notification on ``channel``.

        Channels are listened to from the next (re)connect on; subscribe before the app starts.
        """
        self._channels.setdefault(channel, []).append(callback)

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` for every notification on the contract's channels; returns an
        unsubscribe."""
        self._everything.add(callback)
        return lambda: self._everything.discard(callback)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every (re)connect, once LISTEN is in place: notifications
        sent while the connection was down are lost, so whoever caches state reloads it."""
        self._on_connect.append(callback)

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        text = str(payload)
        if channel == self.ping_channel:
            future = self._pings.pop(text, None)
            if future is not None and not future.done():
                future.set_result(None)
            return
        callbacks = list(self._channels.get(channel, ()))
        if channel in CHANNELS:
            callbacks += list(self._everything)
        for callback in callbacks:
            try:
                callback(channel, text)
            except Exception:
                log.exception("notification subscriber failed", extra={"channel": channel})

    def _on_terminate(self, _conn: object) -> None:
        self.connected = False
        self._up.clear()
        self._lost.set()

    async def wait_connected(self) -> None:
        """Wait until the LISTEN connection is up."""
        await self._up.wait()

    # ------------------------------------------------------------------ delivery check
    def expect_ping(self) -> tuple[str, asyncio.Future[None]]:
        """A token to send on ``ping_channel``, and the future its arrival completes."""
        token = uuid.uuid4().hex
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[token] = future
        return token, future

    def forget_ping(self, token: str) -> None:
        """Stop waiting for a ping (it timed out)."""
        self._pings.pop(token, None)

    # ------------------------------------------------------------------ the connection
    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff whenever the connection drops."""
        backoff = 0.25
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect_direct(
                    self.dsn,
                    timeout=self.connect_timeout,
                    settings={"application_name": "monitoring-exporter-listener"},
                )
                conn.add_termination_listener(self._on_terminate)
                for channel in [*self._channels, self.ping_channel]:
                    await conn.add_listener(channel, self._dispatch)
                self._lost.clear()
                self.connected = True
                self.last_error = None
                self._up.set()
                backoff = 0.25
                for callback in self._on_connect:
                    callback()
                while not self._lost.is_set():
                    # a cheap query now and then notices a dead TCP peer; asyncio.timeout,
                    # because 3.11's wait_for swallows a cancellation that arrives as the
                    # event is set, and this loop would then outlive its task's cancel
                    try:
                        async with asyncio.timeout(15):
                            await self._lost.wait()
                    except TimeoutError:
                        await conn.fetchval("SELECT 1", timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("listener disconnected", extra={"error": self.last_error})
            finally:
                self.connected = False
                self._up.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
