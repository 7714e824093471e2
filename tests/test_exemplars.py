"""Exemplars: monitoring_operation_duration_seconds carries a recent trace id per bucket in
OpenMetrics, the same on every replica; a real Prometheus with exemplar storage keeps them."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.conftest import MakeClient, eventually
from tests.support import peers
from tests.test_health_prometheus import free_port

OPEN: dict[str, Any] = {"auth": {"disabled": True}, "host": {"enabled": False}}
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}
FAMILY = "monitoring_operation_duration_seconds"
# an exemplar after a sample: `# {labels} value timestamp` (promtool 2.42 reads text 0.0.4 only)
EXEMPLAR = re.compile(r" # \{[^}]*\} \S+(?: \S+)?$")


def span(trace_id: str, name: str, ms: float, code: int = 0) -> dict[str, Any]:
    end = time.time_ns()
    return {
        "traceId": trace_id,
        "spanId": trace_id[:16],
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(end - int(ms * 1e6)),
        "endTimeUnixNano": str(end),
        "status": {"code": code},
    }


async def send(client: TestClient[Any, Any], *spans: dict[str, Any]) -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}
    resp = await client.post("/v1/traces", json=body)
    assert resp.status == 200, await resp.text()


async def openmetrics(client: TestClient[Any, Any]) -> str:
    resp = await client.get("/metrics", headers=OPENMETRICS)
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    return await resp.text()


def histogram_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(FAMILY)]


async def test_buckets_carry_the_latest_trace_id_on_every_replica(
    make_client: MakeClient,
) -> None:
    one, two = await make_client(OPEN), await make_client(OPEN)
    slow, fast, newer = "a" * 32, "b" * 32, "c" * 32
    await send(one, span(slow, "GET /a", 3000), span(fast, "GET /a", 3))
    await send(two, span(newer, "GET /b", 3.5))

    async def marked() -> bool:
        text = await openmetrics(one)
        return all(f'trace_id="{t}"' in text for t in (slow, newer))

    await eventually(marked, timeout=5)
    text = await openmetrics(one)
    families = {f.name: f for f in text_string_to_metric_families(text)}  # type: ignore[no-untyped-call]
    buckets = {
        s.labels["le"]: s.exemplar
        for s in families[FAMILY].samples
        if s.name.endswith("_bucket") and s.labels["operation_type"] == "server"
    }
    # the newest of the two in the 2.5-5 ms bucket; the slow one in its own
    assert buckets["0.005"] is not None and buckets["0.005"].labels == {"trace_id": newer}
    assert buckets["0.005"].value == 0.0035
    assert buckets["5.0"] is not None and buckets["5.0"].labels == {"trace_id": slow}
    assert buckets["0.001"] is None
    # replicas agree, exemplars included: they are PostgreSQL's

    async def same() -> bool:
        return histogram_lines(await openmetrics(two)) == histogram_lines(text)

    await eventually(same, timeout=5)
    # text 0.0.4 has no exemplars; promtool finds nothing to say about it, nor about the
    # histogram's OpenMetrics family once the exemplars promtool 2.42 cannot parse are cut
    # (it reads OpenMetrics counters as 0.0.4 ones, whose HELP names lack _total)
    plain = await (await one.get("/metrics")).text()
    assert "trace_id" not in plain
    family = [
        EXEMPLAR.sub("", line)
        for line in text.splitlines()
        if line.startswith((FAMILY, f"# HELP {FAMILY} ", f"# TYPE {FAMILY} "))
    ]
    for body in (plain, "\n".join(family) + "\n"):
        checked = peers.run("promtool", "check", "metrics", input=body)
        assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_prometheus_keeps_the_exemplars(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client(OPEN)
    trace = "0af7651916cd43dd8448eb211c80319c"
    await send(client, span(trace, "checkout", 42))
    config = (
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: exporter\n    static_configs: [{{targets: ['127.0.0.1:{client.port}']}}]\n"
    )
    (tmp_path / "prometheus.yml").write_text(config)
    port = free_port()
    found = peers.peer("prometheus")
    proc = await asyncio.create_subprocess_exec(
        *found.argv(),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=found.env,
    )
    try:
        async with aiohttp.ClientSession() as session:
            now = datetime.now(UTC).timestamp()
            params = {
                "query": f'{FAMILY}_bucket{{operation_type="server"}}',
                "start": str(now - 3600),
                "end": str(now + 3600),
            }

            async def traces() -> set[str]:
                try:
                    async with session.get(
                        f"http://127.0.0.1:{port}/api/v1/query_exemplars", params=params
                    ) as resp:
                        if resp.status != 200:
                            return set()
                        body = await resp.json()
                except aiohttp.ClientError:
                    return set()
                return {e["labels"]["trace_id"] for s in body["data"] for e in s["exemplars"]}

            async def kept() -> bool:
                return trace in await traces()

            await eventually(kept, timeout=45, interval=0.5)
    finally:
        proc.terminate()
        await proc.wait()
