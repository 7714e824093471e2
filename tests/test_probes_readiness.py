"""Kubernetes probes: liveness never depends on the database; readiness says what failed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import MakeClient, eventually
from tests.support.proxy import TcpProxy


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    p = TcpProxy.to_database(database_url)
    await p.start()
    yield p
    await p.close()


def through(proxy: TcpProxy, url: str) -> str:
    return proxy.url(url)


async def test_ready_when_everything_is_up(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/readyz", params={"verbose": ""})
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {
        "database",
        "migrations",
        "listener",
        "views",
        "tasks",
        "shutdown",
    }
    for alias in ("/-/ready",):
        assert (await client.get(alias)).status == 200
    for alias in ("/livez", "/healthz", "/-/healthy"):
        assert (await client.get(alias)).status == 200


async def test_database_down_at_start_then_ready_once_it_appears(
    make_client: MakeClient, proxy: TcpProxy, writer_url: str
) -> None:
    client = await make_client(dsn=through(proxy, writer_url), wait_ready=False)
    assert (await client.get("/livez")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert "database" in body["failed"]
    assert "database" in body["checks"]
    metrics = await (await client.get("/metrics")).text()
    assert "monitoring_db_up 0.0" in metrics

    proxy.enable()

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(ready, timeout=20)
    assert (await client.get("/livez")).status == 200


async def test_database_lost_while_running_turns_readiness_503(
    make_client: MakeClient, proxy: TcpProxy, writer_url: str
) -> None:
    proxy.enable()
    client = await make_client(dsn=through(proxy, writer_url))
    await proxy.cut()

    async def not_ready() -> bool:
        resp = await client.get("/readyz")
        return resp.status == 503

    await eventually(not_ready, timeout=10)
    assert (await client.get("/livez")).status == 200
    proxy.enable()

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(ready, timeout=30)
