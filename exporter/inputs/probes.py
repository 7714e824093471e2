"""Probes of configured services: http, tcp and postgres, each bounded by its own timeout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from exporter.config.services import HttpProbe, PostgresProbe, Service, TcpProbe
from exporter.domain.health_series import Sample
from exporter.storage.probe import PostgresProber

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe: up or not, the time it took, and why it failed."""

    up: bool
    seconds: float
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def samples(self, service: str, uptime: float) -> list[Sample]:
        """The probe's samples: ``up``, ``response_time`` and the ``uptime`` ratio given."""
        now = datetime.now(UTC)
        meta: dict[str, Any] = dict(self.detail)
        if self.error is not None:
            meta["error"] = self.error
        return [
            Sample(service, "up", 1.0 if self.up else 0.0, "", "probe", now, meta),
            Sample(service, "response_time", self.seconds, "s", "probe", now, meta),
            Sample(service, "uptime", uptime, "ratio", "probe", now, {}),
        ]


class Prober:
    """Runs one service's probe; never raises, never takes longer than the timeout."""

    def __init__(self, service: Service, session: aiohttp.ClientSession | None = None) -> None:
        self.service = service
        self.timeout = service.timeout.seconds
        self.session = session
        self._pg: PostgresProber | None = None
        if service.postgres is not None:
            assert service.postgres.dsn is not None
            self._pg = PostgresProber(service.postgres.dsn, service.postgres.query)

    @property
    def kind(self) -> str | None:
        """Which probe this service has (http, tcp, postgres) or None."""
        s = self.service
        return "http" if s.http else "tcp" if s.tcp else "postgres" if s.postgres else None

    async def run(self) -> ProbeResult:
        """Probe once."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                return await self._probe(started)
        except TimeoutError:
            return _failed(started, f"timed out after {self.timeout:g}s")
        except aiohttp.ClientConnectorDNSError as exc:
            return _failed(started, f"DNS lookup failed: {exc.os_error}")
        except aiohttp.ClientError as exc:
            return _failed(started, f"{type(exc).__name__}: {exc}")
        except OSError as exc:
            return _failed(started, f"{type(exc).__name__}: {exc.strerror or exc}")
        except Exception as exc:  # any driver error is a failed probe, not a crash
            return _failed(started, f"{type(exc).__name__}: {exc}")

    async def _probe(self, started: float) -> ProbeResult:
        s = self.service
        if s.http is not None:
            return await self._http(s.http, started)
        if s.tcp is not None:
            return await _tcp(s.tcp, started)
        if s.postgres is not None:
            return await self._postgres(s.postgres)
        raise RuntimeError("service has no probe")

    async def _http(self, cfg: HttpProbe, started: float) -> ProbeResult:
        assert self.session is not None
        async with self.session.request(
            cfg.method,
            cfg.url,
            headers=cfg.headers,
            ssl=cfg.tls_verify,
            allow_redirects=True,
        ) as resp:
            body = await resp.read() if cfg.body_contains is not None else b""
            seconds = time.perf_counter() - started
            detail: dict[str, Any] = {"status_code": resp.status}
            if resp.status not in cfg.expect_status:
                expected = ", ".join(map(str, cfg.expect_status))
                return ProbeResult(
                    False, seconds, f"status {resp.status}, expected {expected}", detail
                )
            if cfg.body_contains is not None and cfg.body_contains.encode() not in body:
                return ProbeResult(
                    False, seconds, "body does not contain the expected text", detail
                )
            return ProbeResult(True, seconds, None, detail)

    async def _postgres(self, cfg: PostgresProbe) -> ProbeResult:
        assert self._pg is not None
        seconds = await self._pg.probe()
        return ProbeResult(True, seconds)

    async def close(self) -> None:
        """Release the probe's connection, if it keeps one."""
        if self._pg is not None:
            await self._pg.close()


async def _tcp(cfg: TcpProbe, started: float) -> ProbeResult:
    host, _, port = cfg.address.rpartition(":")
    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    seconds = time.perf_counter() - started
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, seconds)


def _failed(started: float, error: str) -> ProbeResult:
    return ProbeResult(False, time.perf_counter() - started, error)


Submit = Callable[[Prober, ProbeResult], None]


async def run_probes(probers: list[Prober], submit: Submit) -> None:
    """Probe every service on its own interval, concurrently, until cancelled.

    Each service has its own task, so a slow probe only delays the next probe of its service.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for prober in probers:
                group.create_task(_probe_loop(prober, submit), name=f"probe-{prober.service.name}")
    finally:
        for prober in probers:
            await prober.close()


async def _probe_loop(prober: Prober, submit: Submit) -> None:
    loop = asyncio.get_running_loop()
    interval = prober.service.interval.seconds
    next_at = loop.time()
    while True:
        result = await prober.run()
        try:
            submit(prober, result)
        except Exception:
            log.exception("recording a probe result failed", extra={"service": prober.service.name})
        # after an overrun, skip the missed slots instead of probing in a burst
        next_at = max(next_at + interval, loop.time())
        await asyncio.sleep(next_at - loop.time())
