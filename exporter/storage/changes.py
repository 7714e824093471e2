"""The change log behind the real-time stream (migration 7), read in commit order.

Triggers copy every change into ``change_log`` stamped with its transaction id. A row is
released only once every transaction with a smaller id has finished, so the release order
(xid, id) never puts a later commit before a change already delivered: that pair is the
stream's cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

import asyncpg
import msgspec

from exporter.domain.subscription import Cursor
from exporter.storage.database import Database

CHANNELS = ("health_metrics", "system_alerts", "data_quality", "status_changes")
#: the NOTIFY channel of the log's triggers: a wake-up, the payload says nothing
WAKE_CHANNEL = "change_log"
PAGE = 500

_RELEASED = "xid < pg_snapshot_xmin(pg_current_snapshot())"
AFTER = f"""
SELECT xid::text AS xid, id, channel, op, __SCHEMA__.change_data(channel, data)::text AS data
FROM __SCHEMA__.change_log
WHERE (xid, id) > ($1::text::xid8, $2::bigint) AND {_RELEASED}
  AND ($3::text[] IS NULL OR channel = ANY($3::text[]))
ORDER BY xid, id LIMIT $4
"""
HEAD = f"""
SELECT xid::text AS xid, id FROM __SCHEMA__.change_log WHERE {_RELEASED}
ORDER BY xid DESC, id DESC LIMIT 1
"""
STATE = """
SELECT pruned_xid::text AS pruned_xid, pruned_id,
       pg_snapshot_xmin(pg_current_snapshot())::text AS horizon,
       (SELECT last_value FROM __SCHEMA__.change_log_id_seq) AS max_id
FROM __SCHEMA__.change_feed_state
"""
PRUNE = "SELECT __SCHEMA__.prune_change_log($1)"
RECORD_VERDICT = "SELECT __SCHEMA__.record_verdict($1)"


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one row, in the order the stream sends them."""

    channel: str
    op: str
    cursor: Cursor
    data: dict[str, Any]


class Notice(msgspec.Struct, frozen=True):
    """The payload of the notify_changed triggers the views follow: ids, or an id range for
    large statements."""

    op: str
    ids: list[int] | None = None
    min_id: int | None = None
    max_id: int | None = None


class Standing(Enum):
    """Where a client's cursor stands against the log."""

    KEPT = "kept"  # every change after it is in the log
    PRUNED = "pruned"  # changes after it were removed: the client must start over
    FUTURE = "future"  # nothing this service released carries it


_data = msgspec.json.Decoder(dict[str, Any])


def _change(record: asyncpg.Record) -> Change:
    cursor = (int(record["xid"]), record["id"])
    return Change(record["channel"], record["op"], cursor, _data.decode(record["data"]))


class ChangeFeed:
    """Reads released changes after a cursor, and where the log starts and ends."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def after(
        self, cursor: Cursor, channels: list[str] | None = None, limit: int = PAGE
    ) -> list[Change]:
        """Up to ``limit`` released changes after ``cursor``, in cursor order."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(self.db.sql(AFTER), str(cursor[0]), cursor[1], channels, limit)
        return [_change(r) for r in rows]

    async def head(self) -> Cursor:
        """The last released change (or the last one retention removed, if none is left)."""
        async with self.db.connection() as conn:
            row = await conn.fetchrow(self.db.sql(HEAD))
            if row is not None:
                return (int(row["xid"]), row["id"])
            state = await conn.fetchrow(self.db.sql(STATE))
        return (int(state["pruned_xid"]), state["pruned_id"])

    async def standing(self, cursor: Cursor) -> Standing:
        """Whether changes after ``cursor`` can be replayed in full."""
        async with self.db.connection() as conn:
            state = await conn.fetchrow(self.db.sql(STATE))
        pruned = (int(state["pruned_xid"]), state["pruned_id"])
        newest_id = max(state["max_id"] or 0, pruned[1])
        if cursor[0] >= int(state["horizon"]) or cursor[1] > newest_id:
            return Standing.FUTURE
        return Standing.PRUNED if cursor < pruned else Standing.KEPT


async def prune(conn: asyncpg.Connection, db: Database, keep: timedelta) -> int:
    """Remove changes older than ``keep`` (at least an hour), in the caller's transaction."""
    deleted: int = await conn.fetchval(db.sql(PRUNE), keep)
    return deleted


async def record_verdict(conn: asyncpg.Connection, db: Database, verdict: str) -> bool:
    """Log the overview's verdict if it changed; whether it did."""
    changed: bool = await conn.fetchval(db.sql(RECORD_VERDICT), verdict)
    return changed
