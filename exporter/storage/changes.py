"""The change feed behind the real-time stream: rows read by id after a notification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from exporter.storage.database import Database

CHANNELS = ("health_metrics", "system_alerts", "data_quality")
JSON_COLUMNS = {"metadata", "issues", "labels", "annotations"}
PAGE = 500

HEALTH_BY_IDS = "SELECT * FROM {s}.system_health_metrics WHERE id = ANY($1::bigint[]) ORDER BY id"
HEALTH_BY_RANGE = "SELECT * FROM {s}.system_health_metrics WHERE id BETWEEN $1 AND $2 ORDER BY id"
HEALTH_AFTER = "SELECT * FROM {s}.system_health_metrics WHERE id > $1 ORDER BY id LIMIT $2"
QUALITY_BY_IDS = (
    "SELECT * FROM {s}.data_quality_indicators WHERE id = ANY($1::bigint[]) ORDER BY id"
)
QUALITY_BY_RANGE = (
    "SELECT * FROM {s}.data_quality_indicators WHERE id BETWEEN $1 AND $2 ORDER BY id"
)
QUALITY_AFTER = "SELECT * FROM {s}.data_quality_indicators WHERE id > $1 ORDER BY id LIMIT $2"
# An alert's changes are its lifecycle events; the event id is the cursor.
_ALERT_EVENTS = (
    "SELECT e.id AS event_id, e.from_status, e.to_status, e.actor, e.note, e.at, a.*"
    " FROM {s}.system_alert_events e JOIN {s}.system_alerts a ON a.id = e.alert_id"
)
ALERTS_BY_IDS = _ALERT_EVENTS + " WHERE e.alert_id = ANY($1::bigint[]) AND e.id > $2 ORDER BY e.id"
ALERTS_BY_RANGE = _ALERT_EVENTS + " WHERE e.alert_id BETWEEN $1 AND $2 AND e.id > $3 ORDER BY e.id"
ALERTS_AFTER = _ALERT_EVENTS + " WHERE e.id > $1 ORDER BY e.id LIMIT $2"


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one row, in the order the stream sends them."""

    channel: str
    op: str
    cursor: int
    data: dict[str, Any]


class Notice(msgspec.Struct, frozen=True):
    """The payload of the NOTIFY triggers: ids, or an id range for large statements."""

    op: str
    ids: list[int] | None = None
    min_id: int | None = None
    max_id: int | None = None


def _row(record: asyncpg.Record) -> dict[str, Any]:
    data = dict(record)
    for key in JSON_COLUMNS & data.keys():
        if isinstance(data[key], str):
            data[key] = msgspec.json.decode(data[key])
    return data


def _alert_change(record: asyncpg.Record) -> Change:
    data = _row(record)
    event = {
        k: data.pop(k) for k in ("event_id", "from_status", "to_status", "actor", "note", "at")
    }
    data["event"] = {**event, "id": event.pop("event_id")}
    op = "insert" if event["from_status"] is None else "update"
    return Change("system_alerts", op, data["event"]["id"], data)


class ChangeFeed:
    """Reads the rows a notification names, and replays everything after a cursor."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._s = f'"{db.schema}"'

    def _sql(self, template: str) -> str:
        return template.format(s=self._s)

    async def changes(self, channel: str, notice: Notice, after: int = 0) -> list[Change]:
        """The committed rows a notification is about (alert events newer than ``after``)."""
        async with self.db.connection() as conn:
            if channel == "system_alerts":
                if notice.ids is not None:
                    rows = await conn.fetch(self._sql(ALERTS_BY_IDS), notice.ids, after)
                else:
                    rows = await conn.fetch(
                        self._sql(ALERTS_BY_RANGE), notice.min_id, notice.max_id, after
                    )
                return [_alert_change(r) for r in rows]
            by_ids, by_range = (
                (HEALTH_BY_IDS, HEALTH_BY_RANGE)
                if channel == "health_metrics"
                else (QUALITY_BY_IDS, QUALITY_BY_RANGE)
            )
            if notice.ids is not None:
                rows = await conn.fetch(self._sql(by_ids), notice.ids)
            else:
                rows = await conn.fetch(self._sql(by_range), notice.min_id, notice.max_id)
        return [Change(channel, "insert", r["id"], _row(r)) for r in rows]

    async def replay(self, channel: str, after: int, limit: int = PAGE) -> list[Change]:
        """Up to ``limit`` changes of a channel after a cursor, oldest first."""
        async with self.db.connection() as conn:
            if channel == "system_alerts":
                rows = await conn.fetch(self._sql(ALERTS_AFTER), after, limit)
                return [_alert_change(r) for r in rows]
            template = HEALTH_AFTER if channel == "health_metrics" else QUALITY_AFTER
            rows = await conn.fetch(self._sql(template), after, limit)
        return [Change(channel, "insert", r["id"], _row(r)) for r in rows]
