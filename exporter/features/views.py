"""A replica's caches of PostgreSQL state, kept current from NOTIFY.

Whatever a replica holds in memory (series and their statuses, stored rules, quality scores,
alert counts, the last runs of scheduled jobs) is a view of rows in PostgreSQL. A view reads
the rows a notification names; after the listener (re)connects, and every
``resync_interval`` as a safety net, every view reloads in full, so a notification lost while
the connection was down costs nothing. A view's answers are therefore the same on every
replica within moments of a commit, and a restart or a new replica changes none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from exporter.features.tasks import Supervisor
from exporter.storage import Database, Listener

log = logging.getLogger(__name__)

TASK = "views"


@dataclass
class View:
    """One cache: the channels that announce its changes, a full reload, and an update.

    ``update`` gets the payloads of the notifications that arrived since the last pass; when
    it is None the view reloads in full on every notification.
    """

    name: str
    channels: tuple[str, ...]
    reload: Callable[[], Awaitable[None]]
    update: Callable[[Sequence[str]], Awaitable[None]] | None = None
    pending: list[str] = field(default_factory=list)
    loaded: bool = False


class Views:
    """Every view of one replica, and the one task that keeps them current."""

    def __init__(
        self,
        db: Database,
        listener: Listener,
        supervisor: Supervisor,
        *,
        resync_interval: float = 60.0,
        coalesce: float = 0.01,
    ) -> None:
        self.db = db
        self.listener = listener
        self.supervisor = supervisor
        self.resync_interval = resync_interval
        self.coalesce = coalesce
        self.views: list[View] = []
        self._wake = asyncio.Event()
        self._resync = True
        listener.on_connect(self.resync)

    def add(self, view: View) -> None:
        """Keep a view current (before the app starts)."""
        self.views.append(view)
        for channel in view.channels:
            self.listener.subscribe_channel(channel, self._on_notify)

    @property
    def ready(self) -> bool:
        """Whether every view was loaded once."""
        return all(v.loaded for v in self.views)

    def resync(self) -> None:
        """Reload every view on the next pass (the listener reconnected: notices may be lost)."""
        self._resync = True
        self._wake.set()

    def _on_notify(self, channel: str, payload: str) -> None:
        for view in self.views:
            if channel in view.channels:
                view.pending.append(payload)
        self._wake.set()

    async def run(self) -> None:
        """Load every view, then apply notifications until cancelled (supervised, critical)."""
        await self.db.wait_ready()
        # a failure below leaves pending work for the restarted task: reload everything then
        # (and at once: the listener may not be connected yet)
        self._resync = True
        self._wake.set()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.resync_interval):
                    await self._wake.wait()
            if not self._wake.is_set():
                self._resync = True  # the periodic safety net
            # let a burst of notifications arrive, so it costs one read
            await asyncio.sleep(self.coalesce)
            self._wake.clear()
            await self._pass()
            self.supervisor.succeeded(TASK)

    async def _pass(self) -> None:
        full, self._resync = self._resync, False
        try:
            for view in self.views:
                payloads, view.pending = view.pending, []
                if full or not view.loaded or view.update is None:
                    if full or payloads or not view.loaded:
                        await view.reload()
                        view.loaded = True
                elif payloads:
                    await view.update(payloads)
        except BaseException:
            self._resync = True  # whatever was pending is read again in full
            raise
