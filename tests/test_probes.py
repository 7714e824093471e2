"""Probes against real local targets: up, wrong status, unreachable, DNS failure, hangs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.config.services import Service
from exporter.config.types import dec_hook
from exporter.inputs.probes import Prober, ProbeResult, run_probes
from tests.conftest import MakeClient, eventually


def service(**raw: Any) -> Service:
    return msgspec.convert({"name": "svc", "timeout": "1s", **raw}, Service, dec_hook=dec_hook)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


@pytest.fixture
async def target() -> AsyncIterator[str]:
    """A small HTTP server: /ok answers 200 'all good', /fail 500."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="all good")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="broken")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/fail", fail)
    server = TestServer(app)
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def closed_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def test_http_probe_up(session: aiohttp.ClientSession, target: str) -> None:
    prober = Prober(service(http={"url": f"{target}/ok", "body_contains": "good"}), session)
    result = await prober.run()
    assert result.up and result.error is None
    assert 0 < result.seconds < 1
    assert result.detail == {"status_code": 200}


async def test_http_probe_unexpected_status_or_body(
    session: aiohttp.ClientSession, target: str
) -> None:
    result = await Prober(service(http={"url": f"{target}/fail"}), session).run()
    assert not result.up and "status 500" in (result.error or "")
    cfg: dict[str, Any] = {"url": f"{target}/ok", "body_contains": "missing"}
    result = await Prober(service(http=cfg), session).run()
    assert not result.up and "body" in (result.error or "")
    cfg = {"url": f"{target}/fail", "expect_status": [500]}
    assert (await Prober(service(http=cfg), session).run()).up


async def test_unreachable_targets_are_down(session: aiohttp.ClientSession) -> None:
    port = await closed_port()
    for cfg in (
        {"http": {"url": f"http://127.0.0.1:{port}/"}},
        {"tcp": {"address": f"127.0.0.1:{port}"}},
    ):
        result = await Prober(service(**cfg), session).run()
        assert not result.up
        assert result.error


async def test_dns_failure_is_down(session: aiohttp.ClientSession) -> None:
    for cfg in (
        {"http": {"url": "http://no-such-host.invalid/"}},
        {"tcp": {"address": "no-such-host.invalid:80"}},
    ):
        result = await Prober(service(**cfg), session).run()
        assert not result.up
        assert result.error


async def test_a_probe_that_hangs_is_cut_at_its_timeout(
    session: aiohttp.ClientSession, silent_port: int
) -> None:
    cfg = {"timeout": "300ms", "http": {"url": f"http://127.0.0.1:{silent_port}/"}}
    started = time.monotonic()
    result = await Prober(service(**cfg), session).run()
    assert time.monotonic() - started < 1.5
    assert not result.up and "timed out after 0.3s" in (result.error or "")
    assert 0.25 < result.seconds < 1.5


async def test_postgres_probe(database_url: str) -> None:
    prober = Prober(service(postgres={"dsn": database_url, "query": "SELECT 1"}))
    try:
        assert (await prober.run()).up
        assert (await prober.run()).up  # the connection is reused
    finally:
        await prober.close()
    port = await closed_port()
    bad = Prober(service(postgres={"dsn": f"postgresql://postgres@127.0.0.1:{port}/x"}))
    result = await bad.run()
    assert not result.up and result.error


async def test_a_slow_probe_does_not_delay_another(
    session: aiohttp.ClientSession, target: str, silent_port: int
) -> None:
    slow = Prober(
        msgspec.convert(
            {
                "name": "slow",
                "interval": "50ms",
                "timeout": "2s",
                "http": {"url": f"http://127.0.0.1:{silent_port}/"},
            },
            Service,
            dec_hook=dec_hook,
        ),
        session,
    )
    fast = Prober(
        msgspec.convert(
            {"name": "fast", "interval": "50ms", "timeout": "1s", "http": {"url": f"{target}/ok"}},
            Service,
            dec_hook=dec_hook,
        ),
        session,
    )
    results: dict[str, list[ProbeResult]] = {"slow": [], "fast": []}
    task = asyncio.create_task(
        run_probes([slow, fast], lambda p, r: results[p.service.name].append(r))
    )
    try:

        async def enough() -> bool:
            return len(results["fast"]) >= 5

        await eventually(enough, timeout=1.5)
        assert results["slow"] == []
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_probe_failures_reach_status_and_history(
    make_client: MakeClient, silent_port: int, db: Any
) -> None:
    port = await closed_port()
    client = await make_client(
        {
            "auth": {"disabled": True},
            "host": {"enabled": False},
            "services": [
                {"name": "refused", "interval": "100ms", "tcp": {"address": f"127.0.0.1:{port}"}},
                {"name": "nxdomain", "interval": "100ms", "http": {"url": "http://x.invalid/"}},
                {
                    "name": "hangs",
                    "interval": "100ms",
                    "timeout": "200ms",
                    "http": {"url": f"http://127.0.0.1:{silent_port}/"},
                },
            ],
        }
    )

    async def all_down() -> bool:
        text = await (await client.get("/metrics")).text()
        return all(
            f'monitoring_service_up{{service="{name}"}} 0.0' in text
            and f'monitoring_health_status{{service="{name}",metric_type="up"}} 2' in text
            for name in ("refused", "nxdomain", "hangs")
        )

    await eventually(all_down, timeout=10)

    async def stored() -> bool:
        n = await db.fetchval(
            "SELECT count(DISTINCT service_name) FROM monitoring.system_health_metrics"
            " WHERE metric_type = 'up' AND value = 0 AND status = 'critical' AND source = 'probe'"
            " AND metadata ? 'error'"
        )
        return bool(n == 3)

    await eventually(stored, timeout=10)
