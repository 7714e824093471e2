"""The group commit against a real PostgreSQL: shared batches, lone failures, outages, close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from exporter.config import parse_config
from exporter.storage import Database, StorageUnavailable
from exporter.storage.group_commit import GroupCommit, Limits, QueueFull, Rejected, TooLarge

CREATE = "CREATE TABLE gc_items (id bigint PRIMARY KEY, note text NOT NULL CHECK (note <> 'bad'))"
INSERT = "INSERT INTO gc_items SELECT * FROM unnest($1::bigint[], $2::text[])"


@pytest.fixture
async def database(database_url: str, db: asyncpg.Connection) -> AsyncIterator[Database]:
    await db.execute(CREATE)
    database = Database(database_url, parse_config({}).database)
    await database.connect_forever()
    yield database
    await database.close()


DEFAULT = Limits()


def writer(
    database: Database, limits: Limits = DEFAULT, calls: list[int] | None = None
) -> GroupCommit[tuple[int, str], int]:
    async def write(conn: Any, items: Sequence[tuple[int, str]]) -> list[int]:
        if calls is not None:
            calls.append(len(items))
        await conn.execute(INSERT, [i for i, _ in items], [n for _, n in items])
        return [i for i, _ in items]

    return GroupCommit("test", database, write, limits)


async def count(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM gc_items"))


async def test_concurrent_writes_share_commits_and_each_waits_for_its_own(
    database: Database, db: asyncpg.Connection
) -> None:
    calls: list[int] = []
    gc = writer(database, calls=calls)
    checking = asyncio.Lock()  # one assertion connection, shared

    async def one(i: int) -> int:
        result = await gc.submit((i, f"n{i}"))
        # answered only once committed: another connection sees the row
        async with checking:
            assert await db.fetchval("SELECT note FROM gc_items WHERE id = $1", i) == f"n{i}"
        return result

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert results == list(range(200))
    assert await count(db) == 200
    assert sum(calls) == 200
    assert len(calls) < 200  # grouped
    await gc.close(timeout=5)


async def test_a_bad_item_fails_alone(database: Database, db: asyncpg.Connection) -> None:
    gc = writer(database)
    outcomes = await asyncio.gather(
        *(gc.submit((i, "bad" if i == 7 else "ok")) for i in range(20)), return_exceptions=True
    )
    assert isinstance(outcomes[7], Rejected)
    assert [o for i, o in enumerate(outcomes) if i != 7] == [i for i in range(20) if i != 7]
    assert await count(db) == 19
    await gc.close(timeout=5)


async def test_bounds_refuse_before_queueing(database: Database, db: asyncpg.Connection) -> None:
    gc = writer(database, Limits(max_queued=3))
    with pytest.raises(TooLarge):
        await gc.submit((1, "x"), nbytes=1 << 41)
    first = [asyncio.ensure_future(gc.submit((i, "x"))) for i in range(3)]
    await asyncio.sleep(0)  # the three are queued (and in flight: still counted)
    with pytest.raises(QueueFull):
        await gc.submit((9, "x"))
    assert await asyncio.gather(*first) == [0, 1, 2]
    assert await count(db) == 3
    await gc.close(timeout=5)


async def test_an_outage_answers_every_caller_storage_unavailable(
    database: Database, db: asyncpg.Connection
) -> None:
    gc = writer(database)
    await database.close()  # the pool is gone, as when the database is unreachable
    outcomes = await asyncio.gather(
        *(gc.submit((i, "ok")) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, StorageUnavailable) for o in outcomes)
    assert await count(db) == 0


async def test_close_with_a_stuck_database_answers_503_in_time_and_commits_nothing(
    database: Database, db: asyncpg.Connection
) -> None:
    gc = writer(database)
    await db.execute("BEGIN")
    await db.execute("LOCK TABLE gc_items IN ACCESS EXCLUSIVE MODE")
    waiting = [asyncio.ensure_future(gc.submit((i, "ok"))) for i in range(10)]
    await asyncio.sleep(0.3)  # the first batch is now blocked on the lock
    started = asyncio.get_running_loop().time()
    await gc.close(timeout=1.0)
    took = asyncio.get_running_loop().time() - started
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    await db.execute("ROLLBACK")
    assert took < 4.0
    assert all(isinstance(o, StorageUnavailable) for o in outcomes)
    assert await count(db) == 0
    with pytest.raises(StorageUnavailable):
        await gc.submit((99, "late"))
