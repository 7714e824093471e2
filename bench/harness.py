"""What every benchmark shares: figures with targets, median timing, a scratch database."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from exporter.storage.migrate import migrate
from tests.support.postgres import admin_url_from_env, create_database, drop_database


@dataclass(frozen=True)
class Figure:
    """One measured figure, optionally compared with a baseline measured in the same run."""

    name: str
    value: float
    unit: str
    target: str = ""
    baseline: float | None = None
    baseline_name: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        """value / baseline, when there is a baseline."""
        if self.baseline in (None, 0):
            return None
        assert self.baseline is not None
        return self.value / self.baseline


def median_seconds(fn: Callable[[], object], rounds: int, repeat: int = 1) -> float:
    """Median over ``rounds`` of the time of ``repeat`` calls of ``fn``, per call."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        samples.append((time.perf_counter() - started) / repeat)
    return statistics.median(samples)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values`` by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A fresh, migrated database on the test server, dropped afterwards."""
    admin = admin_url_from_env()
    url = await create_database(admin)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn, "monitoring")
        finally:
            await conn.close()
        yield url
    finally:
        await drop_database(admin, url)
