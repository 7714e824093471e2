"""One LISTEN connection that fans PostgreSQL notifications out to subscribers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

CHANNELS = ("health_metrics", "system_alerts", "data_quality")
Callback = Callable[[str, str], None]


class Listener:
    """Keeps a dedicated connection listening on the contract's channels, reconnecting."""

    def __init__(self, dsn: str, *, connect_timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.connected = False
        self._subscribers: set[Callback] = set()
        self._lost = asyncio.Event()
        self._up = asyncio.Event()

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(channel, payload)`` on every notification; returns an unsubscribe."""
        self._subscribers.add(callback)
        return lambda: self._subscribers.discard(callback)

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        for callback in list(self._subscribers):
            try:
                callback(channel, str(payload))
            except Exception:
                log.exception("notification subscriber failed", extra={"channel": channel})

    def _on_terminate(self, _conn: object) -> None:
        self.connected = False
        self._up.clear()
        self._lost.set()

    async def wait_connected(self) -> None:
        """Wait until the LISTEN connection is up."""
        await self._up.wait()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff whenever the connection drops."""
        backoff = 0.25
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
                conn.add_termination_listener(self._on_terminate)
                for channel in CHANNELS:
                    await conn.add_listener(channel, self._dispatch)
                self._lost.clear()
                self.connected = True
                self._up.set()
                backoff = 0.25
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
                log.warning("listener disconnected", extra={"error": f"{type(exc).__name__}"})
            finally:
                self.connected = False
                self._up.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
