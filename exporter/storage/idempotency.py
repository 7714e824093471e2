"""idempotency_keys: the first outcome of every write sent with an ``Idempotency-Key``.

A write claims its key in its own transaction, before it stores anything, and stores its
response in the same transaction: either both commit or neither does. A retry whose key is
claimed gets the stored response; two concurrent requests with one key serialise on the key's
row (the second waits for the first to commit, then finds the key taken).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from exporter.storage.database import Database, Pinned

CLAIM = """
INSERT INTO __SCHEMA__.idempotency_keys (principal, key, route, request_hash, status, response)
SELECT p, k, r, h, 0, ''::bytea
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS t(p, k, r, h)
ON CONFLICT (principal, key) DO NOTHING
RETURNING principal, key
"""

STORE = """
UPDATE __SCHEMA__.idempotency_keys AS i SET status = t.s, response = t.b
FROM unnest($1::text[], $2::text[], $3::int4[], $4::bytea[]) AS t(p, k, s, b)
WHERE (i.principal, i.key) = (t.p, t.k)
"""

LOOKUP = """
SELECT route, request_hash, status, response FROM __SCHEMA__.idempotency_keys
WHERE principal = $1 AND key = $2
"""


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's key for one write: whose, which, for which route and which request."""

    principal: str
    key: str
    route: str
    request_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """The response a key's first request got."""

    route: str
    request_hash: bytes
    status: int
    body: bytes


async def claim(
    conn: asyncpg.Connection, db: Database, keys: Sequence[IdempotencyKey]
) -> list[bool]:
    """Claim keys in the caller's transaction; False for each one already taken."""
    if not keys:
        return []
    rows = await conn.fetch(
        db.sql(CLAIM),
        [k.principal for k in keys],
        [k.key for k in keys],
        [k.route for k in keys],
        [k.request_hash for k in keys],
    )
    taken = {(r["principal"], r["key"]) for r in rows}
    out = []
    for k in keys:
        # one key twice in a batch: the first occurrence owns it
        mine = (k.principal, k.key) in taken
        taken.discard((k.principal, k.key))
        out.append(mine)
    return out


async def store(
    conn: asyncpg.Connection,
    db: Database,
    outcomes: Sequence[tuple[IdempotencyKey, int, bytes]],
) -> None:
    """Store the responses of claimed keys, in the same transaction as the claim."""
    if not outcomes:
        return
    await conn.execute(
        db.sql(STORE),
        [k.principal for k, _, _ in outcomes],
        [k.key for k, _, _ in outcomes],
        [status for _, status, _ in outcomes],
        [body for _, _, body in outcomes],
    )


async def lookup(db: Database, principal: str, key: str) -> StoredOutcome | None:
    """The stored outcome of a key, if it was used."""
    async with db.connection() as conn:
        row = await conn.fetchrow(db.sql(LOOKUP), principal, key)
    if row is None:
        return None
    return StoredOutcome(
        row["route"], bytes(row["request_hash"]), row["status"], bytes(row["response"])
    )


T = TypeVar("T")
R = TypeVar("R")


class Duplicate:
    """The result of a write whose key an earlier request already used: nothing was stored."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DUPLICATE"


DUPLICATE = Duplicate()


@dataclass(frozen=True, slots=True)
class Keyed(Generic[T]):
    """A write, with the key its request carried and how to render its response."""

    value: T
    key: IdempotencyKey | None = None
    render: Callable[[Any], tuple[int, bytes]] | None = None


async def keyed_batch(
    conn: asyncpg.Connection,
    db: Database,
    items: Sequence[Keyed[T]],
    write: Callable[[asyncpg.Connection, Sequence[T]], Awaitable[Sequence[R]]],
) -> list[R | Duplicate]:
    """Write a batch whose items may carry keys: claim them, write the rest, store responses,
    all in one transaction. Items without keys take ``write``'s own path."""
    if all(item.key is None for item in items):
        return list(await write(conn, [item.value for item in items]))
    async with conn.transaction():
        keyed = [item for item in items if item.key is not None]
        claimed = await claim(conn, db, [item.key for item in keyed if item.key is not None])
        won = {id(item) for item, ok in zip(keyed, claimed, strict=True) if ok}
        fresh = [item for item in items if item.key is None or id(item) in won]
        results = list(await write(conn, [item.value for item in fresh])) if fresh else []
        by_item = {id(item): r for item, r in zip(fresh, results, strict=True)}
        outcomes = []
        for item in fresh:
            if item.key is not None and item.render is not None:
                status, body = item.render(by_item[id(item)])
                outcomes.append((item.key, status, body))
        await store(conn, db, outcomes)
    return [by_item.get(id(item), DUPLICATE) for item in items]


async def once(
    db: Database,
    key: IdempotencyKey | None,
    work: Callable[[Database], Awaitable[R]],
    render: Callable[[R], tuple[int, bytes]],
) -> R | Duplicate:
    """Run a write (``work`` gets the database to write through) once per key: the key is
    claimed and the rendered response stored in the write's own transaction."""
    if key is None:
        return await work(db)
    async with db.transaction() as conn:
        (claimed,) = await claim(conn, db, [key])
        if not claimed:
            return DUPLICATE
        result = await work(Pinned(db, conn))
        status, body = render(result)
        await store(conn, db, [(key, status, body)])
    return result
