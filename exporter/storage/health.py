"""system_health_metrics and health_series: samples and the series state, in one transaction.

A batch of samples is stored by one transaction that locks the state of its series, reads the
stored rules of its keys, lets the domain decide (``plan_pushes``: cap, rules, hysteresis),
inserts the samples and updates the series. Whichever replica runs it, the outcome is the
one the database's state dictates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from exporter.domain.health import Rule, Track, classify, first_track
from exporter.domain.health_rules import Key, RuleBook, key_of_name, override_of, rule_name
from exporter.domain.health_series import (
    Evaluated,
    Plan,
    Sample,
    Series,
    SeriesKey,
    Stored,
    last_per_series,
    plan_pushes,
)
from exporter.storage.database import Database
from exporter.storage.keyset import Keyset

TABLE = "system_health_metrics"
SAMPLE_COLUMNS = (
    "id, service_name, metric_type, value, unit, status, warning_threshold, critical_threshold,"
    " direction, source, replica, metadata, recorded_at, created_at"
)

INSERT_SAMPLES = f"""
INSERT INTO __SCHEMA__.system_health_metrics
    (service_name, metric_type, value, unit, status, warning_threshold, critical_threshold,
     direction, source, replica, metadata, recorded_at)
SELECT s, m, v, u, st, w, c, d, src, r, md::jsonb, at
FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[], $6::float8[],
            $7::float8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[])
     AS t(s, m, v, u, st, w, c, d, src, r, md, at)
RETURNING {SAMPLE_COLUMNS}
"""

# Rows locked in key order, the same in every transaction, so writers queue, never deadlock.
LOCK_SERIES = """
SELECT h.service_name, h.metric_type, h.replica, h.status, h.candidate, h.streak,
       h.expires_at > now() AS live
FROM unnest($1::text[], $2::text[], $3::text[]) AS k(s, m, r)
JOIN __SCHEMA__.health_series h ON (h.service_name, h.metric_type, h.replica) = (k.s, k.m, k.r)
ORDER BY h.service_name, h.metric_type, h.replica
FOR UPDATE OF h
"""

STORED_RULES = """
SELECT name, config, version, updated_at FROM __SCHEMA__.monitoring_dashboard_config
WHERE kind = 'threshold' AND owner = '' AND name = ANY($1::text[])
"""

# Creating series is rare; serialising it keeps the cap exact across replicas.
NEW_SERIES_LOCK = "SELECT pg_advisory_xact_lock(7236830394101867888)"
COUNT_LIVE = "SELECT count(*) FROM __SCHEMA__.health_series WHERE expires_at > now()"

UPSERT_SERIES = """
INSERT INTO __SCHEMA__.health_series AS h
    (service_name, metric_type, replica, value, unit, source, status, candidate, streak,
     pushed_rule, sample_id, recorded_at, expires_at)
SELECT s, m, r, v, u, src, st, ca, sk, pr::jsonb, sid, at, ex
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::int4[], $10::text[], $11::int8[], $12::timestamptz[],
            $13::timestamptz[])
     AS t(s, m, r, v, u, src, st, ca, sk, pr, sid, at, ex)
ON CONFLICT (service_name, metric_type, replica) DO UPDATE SET
    value = excluded.value, unit = excluded.unit, source = excluded.source,
    status = excluded.status, candidate = excluded.candidate, streak = excluded.streak,
    pushed_rule = excluded.pushed_rule, sample_id = excluded.sample_id,
    recorded_at = excluded.recorded_at, expires_at = excluded.expires_at,
    version = h.version + 1
RETURNING service_name, metric_type, replica, version, expires_at
"""

SERIES_COLUMNS = (
    "id, service_name, metric_type, replica, value, unit, source, status, candidate, streak,"
    " pushed_rule, recorded_at, expires_at, version"
)
LIVE_SERIES = f"SELECT {SERIES_COLUMNS} FROM __SCHEMA__.health_series WHERE expires_at > now()"
SERIES_BY_IDS = (
    f"SELECT {SERIES_COLUMNS} FROM __SCHEMA__.health_series WHERE id = ANY($1::bigint[])"
)

UPTIME = """
SELECT count(*) FILTER (WHERE value >= 0.5) AS up, count(*) AS total
FROM __SCHEMA__.system_health_metrics
WHERE service_name = $1 AND metric_type = 'up' AND source = 'probe' AND recorded_at > $2
"""

DEMO_SEEDED = (
    "SELECT EXISTS (SELECT 1 FROM __SCHEMA__.system_health_metrics WHERE metadata ? 'demo')"
)

LIST = Keyset(
    f"SELECT {SAMPLE_COLUMNS} FROM __SCHEMA__.system_health_metrics",
    "recorded_at",
    {
        "service": "service_name = $?",
        "metric_type": "metric_type = $?",
        "status": "status = $?",
        "since": "recorded_at >= $?",
        "until": "recorded_at < $?",
    },
)

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Written:
    """What a batch stored: the plan it followed and, per admitted push, its stored rows."""

    plan: Plan
    rows: list[list[Any] | None]
    #: the state of every series the batch changed, as committed
    series: list[Series]


def _columns(keys: Sequence[SeriesKey]) -> list[list[str]]:
    return [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]]


async def _lock(
    conn: asyncpg.Connection, db: Database, keys: Sequence[SeriesKey]
) -> dict[SeriesKey, Track]:
    """Lock the batch's series; the state of the live ones (an expired one starts afresh)."""
    rows = await conn.fetch(db.sql(LOCK_SERIES), *_columns(keys))
    return {
        (r["service_name"], r["metric_type"], r["replica"]): Track(
            r["status"], r["candidate"], r["streak"]
        )
        for r in rows
        if r["live"]
    }


async def store_samples(
    conn: asyncpg.Connection,
    db: Database,
    pushes: Sequence[Sequence[Sample]],
    rules: RuleBook,
    *,
    cap: int | None,
    expires: Callable[[Sample], datetime],
) -> Written:
    """Store pushes (each all or nothing) in the caller's transaction; see the module."""
    keys = sorted({s.series_key for push in pushes for s in push})
    tracks = await _lock(conn, db, keys)
    names = sorted({rule_name(k[:2]) for k in keys})
    overrides = {
        key_of_name(r["name"]): override_of(
            msgspec.json.decode(r["config"]), r["version"], r["updated_at"]
        )
        for r in await conn.fetch(db.sql(STORED_RULES), names)
    }
    live: int | None = None
    fresh = [k for k in keys if k not in tracks]
    if fresh:
        await conn.execute(NEW_SERIES_LOCK)
        # a series another replica created while this one waited is not new after all
        more = await _lock(conn, db, fresh)
        tracks.update(more)
        if cap is not None:
            live = int(await conn.fetchval(db.sql(COUNT_LIVE)))
    plan = plan_pushes(pushes, Stored(tracks, overrides, live), rules, cap)
    evaluated = plan.evaluated
    if not evaluated:
        return Written(plan, [None] * len(pushes), [])
    stored = await conn.fetch(db.sql(INSERT_SAMPLES), *_sample_columns(evaluated))
    ids = {e.sample.series_key: row["id"] for e, row in zip(evaluated, stored, strict=True)}
    last = last_per_series(evaluated)
    upserted = await conn.fetch(db.sql(UPSERT_SERIES), *_series_columns(last, ids, expires))
    series = [
        Series(e.sample, e.track, r["expires_at"].timestamp(), r["version"])
        for e, r in zip(last, upserted, strict=True)
    ]
    rows: list[list[Any] | None] = []
    offset = 0
    for outcome in plan.outcomes:
        if isinstance(outcome, list):
            rows.append(list(stored[offset : offset + len(outcome)]))
            offset += len(outcome)
        else:
            rows.append(None)
    return Written(plan, rows, series)


def _rule_columns(rule: Rule) -> tuple[float | None, float | None, str | None]:
    return rule.warning, rule.critical, None if rule.empty else rule.direction


def _sample_columns(evaluated: Sequence[Evaluated]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(12)]
    for e in evaluated:
        s = e.sample
        warning, critical, direction = _rule_columns(e.rule)
        values = (
            s.service, s.metric_type, s.value, s.unit, e.status, warning, critical, direction,
            s.source, s.replica, _encode(s.metadata).decode(), s.recorded_at,
        )  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def _pushed_rule(rule: Rule | None) -> str | None:
    if rule is None:
        return None
    return _encode(
        {"warning": rule.warning, "critical": rule.critical, "direction": rule.direction,
         "for": rule.for_}
    ).decode()  # fmt: skip


def _series_columns(
    last: Sequence[Evaluated], ids: dict[SeriesKey, int], expires: Callable[[Sample], datetime]
) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(13)]
    for e in last:
        s, t = e.sample, e.track
        values = (
            s.service, s.metric_type, s.replica, s.value, s.unit, s.source, t.status,
            t.candidate, t.streak, _pushed_rule(s.pushed_rule), ids[s.series_key],
            s.recorded_at, expires(s),
        )  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def series_of(row: Any) -> Series:
    """A cached series from a health_series row."""
    pushed = None
    if row["pushed_rule"] is not None:
        raw = msgspec.json.decode(row["pushed_rule"])
        pushed = Rule(raw["warning"], raw["critical"], raw["direction"], raw["for"])
    sample = Sample(
        row["service_name"], row["metric_type"], row["value"], row["unit"], row["source"],
        row["recorded_at"], {}, pushed, row["replica"],
    )  # fmt: skip
    track = Track(row["status"], row["candidate"], row["streak"])
    return Series(sample, track, row["expires_at"].timestamp(), row["version"])


async def live_series(db: Database) -> list[Series]:
    """Every series not expired (a replica's full resync)."""
    async with db.connection() as conn:
        rows = await conn.fetch(db.sql(LIVE_SERIES))
    return [series_of(r) for r in rows]


async def series_by_ids(db: Database, ids: Sequence[int]) -> list[Series]:
    """The current state of some series (after a notification named them)."""
    async with db.connection() as conn:
        rows = await conn.fetch(db.sql(SERIES_BY_IDS), list(ids))
    return [series_of(r) for r in rows]


async def uptime(
    conn: asyncpg.Connection, db: Database, service: str, since: datetime
) -> tuple[int, int]:
    """(successful, all) probes of a service since ``since``."""
    row = await conn.fetchrow(db.sql(UPTIME), service, since)
    return int(row["up"]), int(row["total"])


async def list_samples(
    db: Database, filters: dict[str, Any], after: tuple[datetime, int] | None, limit: int
) -> list[Any]:
    """A page of samples, newest first, matching every given filter."""
    return await LIST.page(db, filters, after, limit)


async def demo_seeded(conn: asyncpg.Connection, db: Database) -> bool:
    """Whether the demo history is stored already."""
    return bool(await conn.fetchval(db.sql(DEMO_SEEDED)))


__all__ = [
    "TABLE",
    "Key",
    "Written",
    "list_samples",
    "live_series",
    "series_by_ids",
    "store_samples",
]


async def store_batch(
    conn: asyncpg.Connection,
    db: Database,
    pushes: Sequence[Sequence[Sample]],
    rules: RuleBook,
    *,
    cap: int | None,
    expires: Callable[[Sample], datetime],
) -> Written:
    """``store_samples`` in a transaction of its own (the group commit's batch)."""
    async with conn.transaction():
        return await store_samples(conn, db, pushes, rules, cap=cap, expires=expires)


async def insert_history(
    conn: asyncpg.Connection, db: Database, samples: Sequence[Sample], rules: RuleBook
) -> int:
    """Insert past samples as they are (each classified on its own; the series state, which
    describes the present, is left alone). The demo's day of history."""
    evaluated = [
        Evaluated(s, rule, first_track(classify(s.value, rule)))
        for s in samples
        for rule in [rules.rule_for(s.key, s.pushed_rule)[0]]
    ]
    stored = await conn.fetch(db.sql(INSERT_SAMPLES), *_sample_columns(evaluated))
    return len(stored)
