"""Real PostgreSQL for tests: the machine's server or an embedded one; a database per test."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    """The database a URL names (a Unix-socket URL ends in ``?host=/dir``, not in the name)."""
    return urlsplit(url).path.lstrip("/")


def server_address(url: str) -> tuple[str, int] | str:
    """Where the server of a libpq URL listens: (host, port) over TCP, or a Unix socket path."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    host = query.get("host") or parts.hostname or "127.0.0.1"
    port = int(query.get("port") or parts.port or 5432)
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return host, port


def over_tcp(url: str, host: str, port: int) -> str:
    """The same database and user reached at ``host:port`` over TCP (e.g. through a proxy)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port")]
    user = parts.username or "postgres"
    auth = f"{user}:{parts.password}@" if parts.password else f"{user}@"
    return urlunsplit(parts._replace(netloc=f"{auth}{host}:{port}", query=urlencode(query)))


async def server_reachable(url: str) -> bool:
    """Whether a PostgreSQL answers at ``url``."""
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@contextlib.contextmanager
def embedded_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory for an embedded PostgreSQL a test starts: ``tmp_path/pg``, but not as root.

    As root, pgserver runs PostgreSQL as the system user ``pgserver``, which must traverse
    every folder above its data; and every pytest session started as root resets
    /tmp/pytest-of-root to 0700, so the server of any other session running then lost its
    files (``PANIC: could not open file .../global/pg_control: Permission denied``). So as
    root it is a fresh folder in the system's temp dir, removed afterwards.
    """
    if os.geteuid() != 0:
        yield tmp_path / "pg"
        return
    folder = Path(tempfile.mkdtemp(prefix="monitoring-exporter-test-pg-"))
    try:
        yield folder / "pg"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class EmbeddedServer:
    """A test-owned PostgreSQL from the pgserver wheel, which the test may stop and start."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start (or restart) the server; return its URL."""
        pgserver = importlib.import_module("pgserver")
        self._server = pgserver.get_server(str(self.data_dir), cleanup_mode="stop")
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        """Stop the server."""
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()

    def crash(self) -> None:
        """Stop the server in immediate mode, as a crash would (no checkpoint, every client
        cut off mid-statement, crash recovery at the next start)."""
        if self._server is None:
            return
        commands = importlib.import_module("pgserver._commands")
        server, self._server = self._server, None
        commands.pg_ctl(
            ["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user
        )
        with contextlib.suppress(Exception):  # its handle still thinks it runs
            server.cleanup()


async def create_database(admin_url: str, template: str | None = None) -> str:
    """Create a fresh database (optionally from a template); return its URL."""
    name = f"mexp_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, url: str) -> None:
    """Drop a database made by :func:`create_database`, closing its connections."""
    name = database_name(url)
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def admin_url_from_env() -> str:
    """The server the tests use: MONITORING_TEST_DATABASE_URL or the local default."""
    return os.environ.get("MONITORING_TEST_DATABASE_URL", DEFAULT_URL)


def embedded_forced() -> bool:
    """MONITORING_TEST_EMBEDDED=1: use an embedded server even when another one answers.

    It is how CI proves the suite passes on a machine with no PostgreSQL at all.
    """
    return os.environ.get("MONITORING_TEST_EMBEDDED", "") not in ("", "0")
