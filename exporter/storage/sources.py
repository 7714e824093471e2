"""Connections to the data sources that quality checks read: one small pool per source.

Pools are created on first use and connect lazily, so a source that is down fails only the
checks that read it. Sessions are read-only with a server-side ``statement_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from exporter.config.quality import Source

log = logging.getLogger(__name__)


class SourceError(Exception):
    """A query against a data source failed (unreachable, invalid SQL, timed out)."""


class SourcePools:
    """Named pools over ``quality.sources``; ``fetch`` runs one read-only query on one source."""

    def __init__(self, sources: Mapping[str, Source]) -> None:
        self.sources = dict(sources)
        self._pools: dict[str, asyncpg.Pool] = {}
        self._lock = asyncio.Lock()

    async def _pool(self, name: str) -> asyncpg.Pool:
        async with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                source = self.sources[name]
                timeout_ms = max(1, int(source.statement_timeout.seconds * 1000))
                # min_size=0: creating the pool opens no connection, the first query does
                pool = await asyncpg.create_pool(
                    source.dsn,
                    min_size=0,
                    max_size=source.pool_size,
                    timeout=source.connect_timeout.seconds,
                    max_inactive_connection_lifetime=300,
                    server_settings={
                        "application_name": "monitoring-exporter-quality",
                        "statement_timeout": str(timeout_ms),
                        "default_transaction_read_only": "on",
                        "TimeZone": "UTC",
                    },
                )
                self._pools[name] = pool
            return pool

    async def fetch(
        self, name: str, sql: str, args: Sequence[Any] = (), *, timeout: float
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` with ``$n`` arguments on source ``name``: (column names, rows)."""
        try:
            pool = await self._pool(name)
            async with pool.acquire(timeout=timeout) as conn:
                stmt = await conn.prepare(sql, timeout=timeout)
                columns = [a.name for a in stmt.get_attributes()]
                records = await stmt.fetch(*args, timeout=timeout)
        except Exception as exc:  # any failure of this source fails only the check
            raise SourceError(f"{type(exc).__name__}: {exc}".strip().rstrip(":")) from exc
        return columns, [tuple(r) for r in records]

    async def close(self) -> None:
        """Close every pool (queries in flight are given a moment, then terminated)."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            try:
                async with asyncio.timeout(5):
                    await pool.close()
            except TimeoutError:
                pool.terminate()
