"""Keyset pagination: every list of the API pages through its table the same way.

Newest first by (time, id); filters are constant SQL fragments whose values always travel as
parameters; the position a page ends at is the (time, id) of its last row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exporter.storage.database import Database


@dataclass(frozen=True)
class Keyset:
    """A table's list query: what to select, its time column, and its filters.

    ``filters`` maps a filter's name to a fragment with ``$?`` where its parameter goes, e.g.
    ``"service_name = $?"`` or ``"status = ANY($?::text[])"``.
    """

    select: str
    time_column: str
    filters: Mapping[str, str]
    id_column: str = "id"

    def query(
        self, values: Mapping[str, Any], after: tuple[datetime, int] | None, limit: int
    ) -> tuple[str, list[Any]]:
        """The SQL and its parameters for one page."""
        clauses: list[str] = []
        args: list[Any] = []
        for name, value in values.items():
            if value is None:
                continue
            args.append(value)
            clauses.append(self.filters[name].replace("$?", f"${len(args)}"))
        if after is not None:
            args += [after[0], after[1]]
            clauses.append(
                f"({self.time_column}, {self.id_column}) < (${len(args) - 1}, ${len(args)})"
            )
        sql = self.select
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        args.append(limit)
        sql += f" ORDER BY {self.time_column} DESC, {self.id_column} DESC LIMIT ${len(args)}"
        return sql, args

    async def page(
        self,
        db: Database,
        values: Mapping[str, Any],
        after: tuple[datetime, int] | None,
        limit: int,
    ) -> list[Any]:
        """One page of rows, newest first, after the position ``after``."""
        sql, args = self.query(values, after, limit)
        async with db.connection() as conn:
            rows: list[Any] = await conn.fetch(db.sql(sql), *args)
        return rows
