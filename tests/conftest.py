"""Fixtures: a real PostgreSQL, one fresh database per test, a writer-only login, and
app/client factories."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import yaml
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from exporter.config import Config, parse_config
from exporter.features.core import LIFECYCLE
from exporter.storage.migrate import migrate
from exporter.web.app import create_app
from tests.support.postgres import (
    EmbeddedServer,
    admin_url_from_env,
    create_database,
    database_name,
    drop_database,
    embedded_data_dir,
    embedded_forced,
    server_reachable,
    with_database,
)

os.environ.setdefault("PROMETHEUS_DISABLE_CREATED_SERIES", "True")

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser URL of a real PostgreSQL: the machine's, or an embedded one if none runs
    (or if MONITORING_TEST_EMBEDDED=1)."""
    url = admin_url_from_env()
    if not embedded_forced() and asyncio.run(server_reachable(url)):
        yield url
        return
    with embedded_data_dir(tmp_path_factory.mktemp("embedded")) as data_dir:
        server = EmbeddedServer(data_dir)
        yield with_database(server.start(), "postgres")
        server.stop()


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> Iterator[str]:
    """A migrated database that every test's database is copied from."""

    async def build() -> str:
        url = await create_database(admin_url)
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn, "monitoring")
        finally:
            await conn.close()
        return url

    url = asyncio.run(build())
    yield database_name(url)
    asyncio.run(drop_database(admin_url, url))


@pytest.fixture(scope="session")
def writer_login(admin_url: str, template_db: str) -> Iterator[str]:
    """A login granted only monitoring_writer, the way the service runs in production.

    The role monitoring_writer comes from the template's migrations, which the superuser ran
    (and so owns the schema: the service never migrates as this login).
    """
    name = f"mexp_writer_{uuid.uuid4().hex[:12]}"

    async def run(*statements: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(
        run(
            f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS',
            f'GRANT monitoring_writer TO "{name}"',
        )
    )
    yield name
    asyncio.run(run(f'DROP ROLE IF EXISTS "{name}"'))


def as_login(url: str, login: str) -> str:
    """The same database URL, logged in as ``login`` (no password: the test server trusts)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))


@pytest.fixture
async def database_url(admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    url = await create_database(admin_url, template=template_db)
    yield url
    await drop_database(admin_url, url)


@pytest.fixture
def writer_url(database_url: str, writer_login: str) -> str:
    """This test's database as the service sees it: logged in as the writer-only login."""
    return as_login(database_url, writer_login)


@pytest.fixture
async def empty_database_url(admin_url: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all."""
    url = await create_database(admin_url)
    yield url
    await drop_database(admin_url, url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to this test's database, for assertions."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


def make_config(data: dict[str, Any] | None = None) -> Config:
    """A Config from a mapping shaped like the YAML file."""
    return parse_config(data or {})


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.05
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


@pytest.fixture
async def make_client(writer_url: str, aiohttp_client: AiohttpClient) -> MakeClient:
    """Start the real app on a real port (pytest-aiohttp's ``aiohttp_client``, which also
    stops it); by default wait until /readyz says 200.

    The app logs in as the writer-only login unless a test passes its own ``dsn``.
    """

    async def make(
        config: dict[str, Any] | Config | None = None,
        *,
        dsn: str | None = None,
        wait_ready: bool = True,
    ) -> TestClient[Any, Any]:
        cfg = config if isinstance(config, Config) else make_config(config)
        app = create_app(cfg, dsn=dsn or writer_url)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        app[LIFECYCLE].serving.set()
        if wait_ready:

            async def ready() -> bool:
                resp = await client.get("/readyz")
                return resp.status == 200

            await eventually(ready)
        return client

    return make


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, Any] | str], Path]:
    """Write a YAML config file (from a mapping or raw text) and return its path."""
    counter = iter(range(1_000_000))

    def write(content: dict[str, Any] | str) -> Path:
        path = tmp_path / f"config-{next(counter)}.yaml"
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        path.write_text(text, encoding="utf-8")
        return path

    return write
