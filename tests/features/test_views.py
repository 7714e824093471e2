"""A replica's views: current from notifications, reloaded after a reconnect, and their loop
stops when the app cancels it, whatever else happens."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Sequence
from typing import Literal

import asyncpg
import pytest

from exporter.config import parse_config
from exporter.features.tasks import Supervisor
from exporter.features.views import View, Views
from exporter.storage import Database, Listener
from tests.conftest import eventually


class WatchedEvent(asyncio.Event):
    """An Event that says when somebody waits on it."""

    waiting = False

    async def wait(self) -> Literal[True]:
        self.waiting = True
        return await super().wait()


class Counter:
    """A view that counts its reloads and the payloads it was given."""

    def __init__(self) -> None:
        self.reloads = 0
        self.payloads: list[str] = []

    async def reload(self) -> None:
        self.reloads += 1

    async def update(self, payloads: Sequence[str]) -> None:
        self.payloads += payloads


@pytest.fixture
async def parts(database_url: str) -> AsyncIterator[tuple[Database, Listener, Supervisor]]:
    db = Database(database_url, parse_config({}).database)
    await db.connect_forever()
    listener = Listener(database_url)
    supervisor = Supervisor()
    supervisor.register("views", critical=True)
    yield db, listener, supervisor
    await db.close()


async def test_notifications_update_and_a_reconnect_reloads(
    parts: tuple[Database, Listener, Supervisor], db: asyncpg.Connection
) -> None:
    database, listener, supervisor = parts
    views = Views(database, listener, supervisor, resync_interval=60)
    counter = Counter()
    views.add(View("counter", ("test_channel",), counter.reload, counter.update))
    listening = asyncio.create_task(listener.run())
    running = asyncio.create_task(views.run())
    try:

        async def loaded() -> bool:
            return views.ready and listener.connected

        await eventually(loaded)
        reloads = counter.reloads
        await db.execute("SELECT pg_notify('test_channel', 'one')")
        await db.execute("SELECT pg_notify('test_channel', 'two')")

        async def updated() -> bool:
            return counter.payloads == ["one", "two"]

        await eventually(updated)
        assert counter.reloads == reloads
        # the listener's connection is killed: notifications meanwhile are lost, so a reload
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'monitoring-exporter-listener'"
            " AND datname = current_database()"
        )

        async def reloaded() -> bool:
            return counter.reloads > reloads and listener.connected

        await eventually(reloaded, timeout=15)
    finally:
        for task in (running, listening):
            task.cancel()
        await asyncio.gather(running, listening, return_exceptions=True)


@pytest.mark.parametrize("turns", range(6))
async def test_the_loop_stops_when_cancelled_as_a_change_arrives(
    parts: tuple[Database, Listener, Supervisor], turns: int
) -> None:
    """A change reported a few loop turns before the cancel must not keep the loop alive.

    Python 3.11's asyncio.wait_for returned the event's result when the cancellation came
    after the event was set but before wait_for woke up; the loop then ran on, and the app's
    cleanup waited for it forever (a test run hung 120 s in a teardown). Every offset is tried.
    """
    database, listener, supervisor = parts
    views = Views(database, listener, supervisor, resync_interval=60, coalesce=0)
    counter = Counter()
    views.add(View("counter", ("test_channel",), counter.reload, counter.update))
    views._wake = watched = WatchedEvent()
    task = asyncio.create_task(views.run())

    async def waiting() -> bool:
        return watched.waiting and views.ready

    await eventually(waiting)
    views._on_notify("test_channel", "x")
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done, "the views loop outlived its cancellation"
    assert task.cancelled()


def test_no_wait_for_in_the_service() -> None:
    """asyncio.timeout everywhere: 3.11's wait_for can swallow the cancel of a stopping app."""
    package = pathlib.Path(__file__).parents[2] / "exporter"
    offenders = [
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if "asyncio.wait_for(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == [], f"use asyncio.timeout instead of asyncio.wait_for in {offenders}"
