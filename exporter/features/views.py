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
import time
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
    #: at least this long between two passes over this view (seconds): changes that arrive
    #: closer together share one read (a view reloaded in full on every notification would
    #: otherwise read at the rate of the writes it follows)
    min_interval: float = 0.0
    pending: list[str] = field(default_factory=list)
    loaded: bool = False
    last: float = 0.0  # monotonic time of the last pass over this view


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
        next_resync = time.monotonic() + self.resync_interval
        while True:
            timeout = max(0.0, min(next_resync, self._due()) - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            if time.monotonic() >= next_resync:
                self._resync = True  # the periodic safety net
                next_resync = time.monotonic() + self.resync_interval
            # let a burst of notifications arrive, so it costs one read
            await asyncio.sleep(self.coalesce)
            self._wake.clear()
            await self._pass()
            self.supervisor.succeeded(TASK)

    def _due(self) -> float:
        """When the earliest view held back by its min_interval may be read again."""
        waiting = [v.last + v.min_interval for v in self.views if v.pending and v.loaded]
        return min(waiting, default=float("inf"))

    async def _pass(self) -> None:
        full, self._resync = self._resync, False
        now = time.monotonic()
        try:
            for view in self.views:
                if not full and view.loaded and now - view.last < view.min_interval:
                    continue  # held back: its notifications wait for the next pass
                payloads, view.pending = view.pending, []
                view.last = now
                if full or not view.loaded or view.update is None:
                    if full or payloads or not view.loaded:
                        await view.reload()
                        view.loaded = True
                elif payloads:
                    await view.update(payloads)
        except BaseException:
            self._resync = True  # whatever was pending is read again in full
            raise
