"""The alert bridge's background loops stop when the app cancels them, whatever else happens."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Literal

import pytest
from aiohttp import web

from exporter.storage import Database, Listener
from exporter.storage import alerts as storage
from exporter.web.alert_bridge import BRIDGE, Bridge, refresh_counts
from exporter.web.keys import CONFIG, DATABASE, LISTENER
from tests.conftest import eventually, make_config


class WatchedEvent(asyncio.Event):
    """An Event that says when somebody waits on it."""

    waiting = False

    async def wait(self) -> Literal[True]:
        self.waiting = True
        return await super().wait()


@pytest.fixture
async def bridge_app(database_url: str) -> AsyncIterator[web.Application]:
    """The state refresh_counts reads, on a connected database, without the rest of the app."""
    config = make_config({"alerts": {"counts_refresh_interval": "0s"}})
    db = Database(database_url, config.database)
    await db.connect_forever()
    app = web.Application()
    app[CONFIG] = config
    app[DATABASE] = db
    app[LISTENER] = Listener(database_url)
    app[BRIDGE] = Bridge(storage.AlertWriter(db))
    yield app
    await db.close()


@pytest.mark.parametrize("turns", range(6))
async def test_counts_loop_stops_when_cancelled_as_a_change_arrives(
    bridge_app: web.Application, turns: int
) -> None:
    """A change reported a few loop turns before the cancel must not keep the loop alive.

    Python 3.11's asyncio.wait_for returned the event's result when the cancellation came
    after the event was set but before wait_for woke up; the loop then ran on, and the app's
    cleanup waited for it forever (a test run hung 120 s in a teardown). Every offset is tried.
    """
    bridge = bridge_app[BRIDGE]
    bridge.dirty = watched = WatchedEvent()
    task = asyncio.create_task(refresh_counts(bridge_app))

    async def waiting() -> bool:
        return watched.waiting and bridge.counts is not None

    await eventually(waiting)
    bridge.dirty.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done, "the counts loop outlived its cancellation"
    assert task.cancelled()


def test_no_wait_for_in_the_service() -> None:
    """asyncio.timeout everywhere: 3.11's wait_for can swallow the cancel of a stopping app."""
    package = pathlib.Path(__file__).parent.parent / "exporter"
    offenders = [
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if "asyncio.wait_for(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == [], f"use asyncio.timeout instead of asyncio.wait_for in {offenders}"
