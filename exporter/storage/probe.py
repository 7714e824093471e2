"""The postgres probe's connection: kept open between probes, reopened after a failure."""

from __future__ import annotations

import time

import asyncpg


class PostgresProber:
    """Times a query's round trip against a monitored PostgreSQL (not the service's own pool)."""

    def __init__(self, dsn: str, query: str) -> None:
        self.dsn = dsn
        self.query = query
        self._conn: asyncpg.Connection | None = None

    async def probe(self) -> float:
        """Run the query once; the round trip in seconds. Raises on any failure.

        The caller bounds the time; a cancelled or failed probe drops the connection so the
        next one starts clean.
        """
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": "monitoring-exporter-probe"}
                )
            started = time.perf_counter()
            await self._conn.fetch(self.query)
            return time.perf_counter() - started
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Drop the connection (without waiting on a server that may not answer)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
