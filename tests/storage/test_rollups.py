"""The rollups of migration 9 against the raw rows they summarise, in a real PostgreSQL."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from exporter.config import parse_config
from exporter.domain.sketch import RELATIVE_ACCURACY, Sketch, key
from exporter.storage import Database, rollups

BOUND = RELATIVE_ACCURACY * (1 + 1e-9)

INSERT = """
INSERT INTO monitoring.system_performance_logs
    (operation_type, operation_name, duration_ms, status, recorded_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::timestamptz[])
"""

EXACT = """
SELECT operation_type, coalesce(operation_name, '') AS operation_name, count(*) AS n,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE status = 'timeout') AS timeouts,
       sum(duration_ms) AS sum_ms, max(duration_ms) AS max_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99
FROM monitoring.system_performance_logs WHERE recorded_at >= $1 AND recorded_at < $2
GROUP BY 1, 2
"""


@pytest.fixture
async def database(writer_url: str) -> AsyncIterator[Database]:
    """The service's view: the writer-only login."""
    db = Database(writer_url, parse_config({}).database)
    await db.connect_forever()
    yield db
    await db.close()


def records(
    n: int, start: datetime, span: timedelta, seed: int = 7
) -> tuple[list[str], list[str | None], list[float], list[str], list[datetime]]:
    rnd = random.Random(seed)
    ops = [("api_call", "GET /a"), ("api_call", None), ("data_sync", "orders")]
    picked = [rnd.choice(ops) for _ in range(n)]
    return (
        [t for t, _ in picked],
        [name for _, name in picked],
        [0.0 if rnd.random() < 0.01 else rnd.lognormvariate(3, 1.2) for _ in range(n)],
        [rnd.choice(["success"] * 8 + ["error", "timeout"]) for _ in range(n)],
        [start + span * rnd.random() for _ in range(n)],
    )


async def test_postgres_and_python_put_every_duration_in_the_same_bucket(
    db: asyncpg.Connection,
) -> None:
    rnd = random.Random(3)
    values = [0.0, 5e-324, 1e-300, 1.0, 1.0202020202020202, 1e12, 0.001, 123.456]
    values += [rnd.lognormvariate(0, 6) for _ in range(20_000)]
    # the edges of buckets, where a last-bit difference would show
    values += [math.exp(k * math.log(1.01 / 0.99)) for k in range(-700, 1400)]
    found = await db.fetch(
        "SELECT monitoring.performance_sketch_key(v) AS k FROM unnest($1::float8[]) AS v", values
    )
    assert [r["k"] for r in found] == [key(v) for v in values]


async def test_summaries_of_any_window_match_the_raw_rows(
    database: Database, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=5)
    columns = records(6000, start, timedelta(hours=5))
    # in several statements, as batches arrive
    for i in range(0, 6000, 1500):
        await db.execute(INSERT, *(c[i : i + 1500] for c in columns))
    rnd = random.Random(11)
    windows = [
        (start, now + timedelta(seconds=1)),  # everything
        (start + timedelta(minutes=37, seconds=13), now - timedelta(minutes=3, seconds=2)),
        (start + timedelta(hours=1), start + timedelta(hours=3)),  # whole hours
        (start + timedelta(minutes=5, seconds=5), start + timedelta(minutes=5, seconds=40)),
        (start + timedelta(minutes=50, seconds=1), start + timedelta(hours=1, minutes=10)),
    ]
    for _ in range(5):
        a, b = sorted(start + timedelta(seconds=rnd.uniform(0, 5 * 3600)) for _ in range(2))
        windows.append((a, b))
    for since, until in windows:
        exact = {
            (r["operation_type"], r["operation_name"]): r
            for r in await db.fetch(EXACT, since, until)
        }
        merged = await rollups.summarise(database, since, until, None, None, 100)
        assert {(m.operation_type, m.operation_name or "") for m in merged} == set(exact)
        for m in merged:
            want = exact[(m.operation_type, m.operation_name or "")]
            assert (m.count, m.errors, m.timeouts) == (
                want["n"], want["errors"], want["timeouts"],
            ), (since, until)  # fmt: skip
            assert m.max_ms == want["max_ms"] and math.isclose(m.sum_ms, want["sum_ms"])
            sketch = Sketch(
                dict(zip(m.keys, m.counts, strict=True)), m.count, m.sum_ms, m.min_ms, m.max_ms
            )
            for q, got in zip(
                ("p50", "p95", "p99"), sketch.quantiles((0.5, 0.95, 0.99)), strict=True
            ):
                assert abs(got - want[q]) <= BOUND * want[q], (since, until, q, got, want[q])


async def test_filters_and_limit(database: Database, db: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    await db.execute(INSERT, *records(500, now - timedelta(hours=2), timedelta(hours=2)))
    since, until = now - timedelta(hours=3), now + timedelta(seconds=1)
    only = await rollups.summarise(database, since, until, "api_call", None, 100)
    assert {m.operation_type for m in only} == {"api_call"} and len(only) == 2
    named = await rollups.summarise(database, since, until, None, "orders", 100)
    assert [(m.operation_type, m.operation_name) for m in named] == [("data_sync", "orders")]
    busiest = await rollups.summarise(database, since, until, None, None, 1)
    assert len(busiest) == 1 and busiest[0].count == max(m.count for m in only + named)


async def test_concurrent_writers_keep_their_own_shards(
    writer_url: str, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    conns = [await asyncpg.connect(writer_url) for _ in range(4)]
    try:
        batch = (["api_call"] * 100, ["x"] * 100, [10.0] * 100, ["success"] * 100, [now] * 100)

        async def write(conn: asyncpg.Connection) -> None:
            for _ in range(5):
                await conn.execute(INSERT, *batch)

        await asyncio.gather(*(write(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    minute = await db.fetch(
        "SELECT shard, n FROM monitoring.performance_log_rollups_minute WHERE operation_name = 'x'"
    )
    assert sum(r["n"] for r in minute) == 2000 and len(minute) >= 2
    hour = await db.fetchval(
        "SELECT sum(n) FROM monitoring.performance_log_rollups_hour WHERE operation_name = 'x'"
    )
    assert hour == 2000


async def test_rollups_outlive_the_raw_rows_and_are_pruned_no_sooner_than_the_policy(
    database: Database, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    await db.execute(
        "INSERT INTO monitoring.performance_log_rollups_hour (starts_at, operation_type,"
        " operation_name, status, shard, n, sum_ms, min_ms, max_ms, keys, counts) VALUES"
        " ($1, 'api_call', '', 'success', 0, 1, 1, 1, 1, '{0}', '{1}'),"
        " ($2, 'api_call', '', 'success', 0, 1, 1, 1, 1, '{0}', '{1}')",
        now - timedelta(days=401),
        now - timedelta(days=399),
    )
    await db.execute(
        "INSERT INTO monitoring.performance_log_rollups_minute (starts_at, operation_type,"
        " operation_name, status, shard, n, sum_ms, min_ms, max_ms, keys, counts) VALUES"
        " ($1, 'api_call', '', 'success', 0, 1, 1, 1, 1, '{0}', '{1}'),"
        " ($2, 'api_call', '', 'success', 0, 1, 1, 1, 1, '{0}', '{1}')",
        now - timedelta(days=36),
        now - timedelta(days=34),
    )
    async with database.transaction() as conn:
        # a caller asking for everything gets what the stored policy allows, no more
        done = await rollups.prune(conn, database, now, timedelta(0), timedelta(0))
    assert done == {"performance_log_rollups_minute": 1, "performance_log_rollups_hour": 1}
    assert await db.fetchval("SELECT count(*) FROM monitoring.performance_log_rollups_hour") == 1
    assert await db.fetchval("SELECT count(*) FROM monitoring.performance_log_rollups_minute") == 1
    # the writer reads the rollups but cannot change them directly
    async with database.connection() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM monitoring.performance_log_rollups_hour")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE monitoring.performance_log_rollups_minute SET n = 5")


async def test_postgres_quantiles_are_the_python_ones(db: asyncpg.Connection) -> None:
    rnd = random.Random(5)
    for size in (1, 2, 7, 100, 5000):
        sketch = Sketch.of(
            [0.0 if rnd.random() < 0.05 else rnd.lognormvariate(2, 2) for _ in range(size)]
        )
        keys, counts = sketch.arrays()
        qs = [0.0, 0.5, 0.95, 0.99, 1.0, rnd.random()]
        found = await db.fetchval(
            "SELECT monitoring.performance_sketch_quantiles($1, $2, $3, $4, $5)",
            keys, counts, qs, sketch.min, sketch.max,
        )  # fmt: skip
        for got, want in zip(found, sketch.quantiles(qs), strict=True):
            assert got == pytest.approx(want, rel=1e-12), (size, qs)
