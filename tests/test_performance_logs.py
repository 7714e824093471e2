"""POST/GET /api/v1/performance-logs against the real app and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from exporter.demo import demo_config
from tests.conftest import MakeClient, eventually, make_config

OPEN: dict[str, Any] = {"auth": {"disabled": True}}
URL = "/api/v1/performance-logs"
NDJSON = {"Content-Type": "application/x-ndjson"}


def rec(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "operation_type": "api_call",
        "operation_name": f"op-{i}",
        "duration_ms": i,
        "status": "success",
        **extra,
    }


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


async def stored(db: asyncpg.Connection) -> int:
    n: int = await db.fetchval("SELECT count(*) FROM monitoring.system_performance_logs")
    return n


async def error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body: dict[str, Any] = (await resp.json())["error"]
    return body


async def test_one_object_an_array_ndjson_and_gzip_are_committed(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    resp = await client.post(
        URL,
        json=rec(
            1,
            request_details={"path": "/a"},
            user_id="u1",
            memory_usage_bytes=1024,
            cpu_usage_percent=12.5,
        ),
    )
    assert resp.status == 200 and await resp.json() == {"committed": 1}
    resp = await client.post(URL, json=[rec(2), rec(3)])
    assert await resp.json() == {"committed": 2}
    resp = await client.post(URL, data=ndjson([rec(4), rec(5)]) + b"\n\n", headers=NDJSON)
    assert await resp.json() == {"committed": 2}
    resp = await client.post(
        URL, data=gzip.compress(ndjson([rec(6)])), headers={**NDJSON, "Content-Encoding": "gzip"}
    )
    assert await resp.json() == {"committed": 1}
    assert await stored(db) == 6
    row = await db.fetchrow(
        "SELECT * FROM monitoring.system_performance_logs WHERE operation_name = 'op-1'"
    )
    assert json.loads(row["request_details"]) == {"path": "/a"}
    assert row["user_id"] == "u1" and row["memory_usage_bytes"] == 1024


async def test_malformed_ndjson_names_the_line_and_stores_nothing(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    body = ndjson([rec(1), rec(2)]) + b"\n{not json\n" + ndjson([rec(3)])
    err = await error(await client.post(URL, data=body, headers=NDJSON), 400)
    assert err["code"] == "malformed_json" and err["details"][0]["path"] == "line 3"
    body = ndjson([rec(1), rec(2, duration_ms="slow")])
    err = await error(await client.post(URL, data=body, headers=NDJSON), 400)
    assert err["details"][0]["path"] == "line 2.duration_ms"
    assert await stored(db) == 0


async def test_rule_violations_are_400_with_the_field_and_nothing_is_stored(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client({**OPEN, "performance_logs": {"max_request_details_bytes": 100}})
    now = datetime.now(UTC)
    cases = [
        (rec(2, duration_ms=-1), "[1].duration_ms"),
        (rec(2, status="maybe"), "[1].status"),
        (rec(2, recorded_at=(now + timedelta(hours=2)).isoformat()), "[1].recorded_at"),
        (rec(2, recorded_at=(now - timedelta(days=30)).isoformat()), "[1].recorded_at"),
        (rec(2, request_details={"blob": "x" * 200}), "[1].request_details"),
        (rec(2, operation_name="a\u0000b"), "[1].operation_name"),
        (rec(2, request_details={"k": "\u0000"}), "[1].request_details"),
        (rec(2, operation_type="Not Valid"), "[1].operation_type"),
        (rec(2, surprise=1), "[1].surprise"),
    ]
    for bad, path in cases:
        err = await error(await client.post(URL, json=[rec(1), bad]), 400)
        assert err["details"][0]["path"] == path, (bad, err)
    assert await stored(db) == 0


async def test_gzip_bomb_is_413_without_inflating_it(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client({**OPEN, "web": {"performance_logs_max_body_bytes": 1 << 20}})
    bomb = gzip.compress(b"\n" * (64 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20
    resp = await client.post(
        URL, data=io.BytesIO(bomb), headers={**NDJSON, "Content-Encoding": "gzip"}
    )
    assert (await error(resp, 413))["code"] == "payload_too_large"
    assert await stored(db) == 0


async def test_100000_records_in_one_request(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    body = io.BytesIO(ndjson([rec(i) for i in range(100_000)]))
    resp = await client.post(URL, data=body, headers=NDJSON)
    assert resp.status == 200 and await resp.json() == {"committed": 100_000}
    assert await stored(db) == 100_000


async def test_records_over_the_per_request_limit_are_413(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client({**OPEN, "performance_logs": {"max_records_per_request": 1000}})
    resp = await client.post(URL, data=ndjson([rec(i) for i in range(1001)]), headers=NDJSON)
    await error(resp, 413)
    resp = await client.post(URL, json=[rec(i) for i in range(1001)])
    await error(resp, 413)
    assert await stored(db) == 0


async def test_a_full_queue_answers_503_with_retry_after(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(
        {**OPEN, "performance_logs": {"batch_max_rows": 10, "queue_max_rows": 10}}
    )
    # a lock held by a test transaction keeps the first batch waiting in the queue
    async with db.transaction():
        await db.execute("LOCK TABLE monitoring.system_performance_logs IN ACCESS EXCLUSIVE MODE")
        first = asyncio.ensure_future(client.post(URL, json=[rec(i) for i in range(8)]))

        async def queued() -> bool:
            resp = await client.get("/metrics")
            return 'monitoring_performance_log_queue{unit="rows"} 8.0' in await resp.text()

        await eventually(queued)
        resp = await client.post(URL, json=[rec(i) for i in range(5)])
        err = await error(resp, 503)
        assert err["code"] == "overloaded" and resp.headers["Retry-After"] == "1"
        too_big = await client.post(URL, json=[rec(i) for i in range(11)])
        await error(too_big, 413)
    assert (await first).status == 200
    assert await stored(db) == 8


async def test_one_bad_request_does_not_fail_the_others_in_its_batch(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client({**OPEN, "performance_logs": {"batch_max_delay": "300ms"}})
    # a number beyond numeric range passes our checks but PostgreSQL refuses it
    bad = (
        b'{"operation_type":"x","duration_ms":1,"status":"success",'
        b'"request_details":{"k":1e999999}}'
    )
    posts = [client.post(URL, json=[rec(i), rec(i + 100)]) for i in range(5)]
    posts.append(client.post(URL, data=bad, headers={"Content-Type": "application/json"}))
    answers = await asyncio.gather(*posts)
    assert [r.status for r in answers] == [200] * 5 + [400]
    assert (await answers[-1].json())["error"]["code"] == "rejected"
    assert await stored(db) == 10


async def test_list_filters_and_cursor(make_client: MakeClient) -> None:
    client = await make_client(OPEN)
    now = datetime.now(UTC)
    records = [
        rec(
            i,
            status="error" if i % 3 == 0 else "success",
            user_id=f"u{i % 2}",
            operation_type="data_sync" if i % 5 == 0 else "api_call",
            recorded_at=(now - timedelta(minutes=i)).isoformat(),
        )
        for i in range(30)
    ]
    assert (await client.post(URL, json=records)).status == 200

    async def get(query: str) -> dict[str, Any]:
        resp = await client.get(f"{URL}?{query}")
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    page = await get("status=error&limit=4")
    assert [r["operation_name"] for r in page["items"]] == ["op-0", "op-3", "op-6", "op-9"]
    page2 = await get(f"status=error&limit=4&cursor={page['next_cursor']}")
    assert [r["operation_name"] for r in page2["items"]] == ["op-12", "op-15", "op-18", "op-21"]
    assert len((await get("operation_type=data_sync"))["items"]) == 6
    assert len((await get("user_id=u1&min_duration_ms=20"))["items"]) == 5
    assert (await get("operation_name=op-7"))["items"][0]["duration_ms"] == 7
    since = (now - timedelta(minutes=9, seconds=30)).isoformat()
    until = (now - timedelta(minutes=4, seconds=30)).isoformat()
    window = await get(f"since={since.replace('+', '%2B')}&until={until.replace('+', '%2B')}")
    assert [r["operation_name"] for r in window["items"]] == [f"op-{i}" for i in range(5, 10)]
    assert (await get("limit=100"))["next_cursor"] is None
    err = await error(await client.get(f"{URL}?status=maybe"), 400)
    assert err["details"][0]["path"] == "status"
    await error(await client.get(f"{URL}?cursor=nonsense"), 400)


async def test_summary_gives_percentiles_and_error_rate(make_client: MakeClient) -> None:
    client = await make_client(OPEN)
    records = [
        rec(
            0,
            operation_name="report",
            operation_type="report_generation",
            duration_ms=i + 1,
            status="error" if i < 10 else "success",
        )
        for i in range(100)
    ]
    assert (await client.post(URL, json=[*records, rec(1, user_id="u1")])).status == 200
    resp = await client.get(f"{URL}/summary?operation_type=report_generation")
    body = await resp.json()
    [item] = body["items"]
    assert item["count"] == 100 and item["error_rate"] == 0.1
    # from the rollups: within 1 % of percentile_cont (50.5, 95.05, 99.01)
    for name, exact in (("p50_ms", 50.5), ("p95_ms", 95.05), ("p99_ms", 99.01)):
        assert abs(item[name] - exact) <= 0.01 * exact, (name, item[name])
    assert item["max_ms"] == 100 and item["avg_ms"] == 50.5
    # user_id is no rollup dimension: that summary is exact, from the raw rows
    resp = await client.get(f"{URL}/summary?user_id=u1")
    [item] = (await resp.json())["items"]
    assert item["count"] == 1 and item["p50_ms"] == 1 and item["operation_name"] == "op-1"


async def test_exposition_histogram_and_counters(make_client: MakeClient) -> None:
    client = await make_client(OPEN)
    await client.post(URL, json=[rec(0, duration_ms=3), rec(1, duration_ms=3000, status="error")])
    await client.post(URL, json=[rec(1, duration_ms=-3)])
    bucket = (
        'monitoring_operation_duration_seconds_bucket{le="0.005",'
        'operation_type="api_call",status="success"} 1.0'
    )

    # the histogram is the database's: every replica reads it within a second
    async def counted() -> bool:
        return bucket in await (await client.get("/metrics")).text()

    await eventually(counted, timeout=3)
    text = await (await client.get("/metrics")).text()
    assert (
        'monitoring_operation_duration_seconds_count{operation_type="api_call",status="error"} 1.0'
    ) in text
    assert 'monitoring_writes_committed_total{table="system_performance_logs"} 2.0' in text
    assert (
        'monitoring_writes_rejected_total{reason="invalid",table="system_performance_logs"}' in text
    )
    assert 'monitoring_performance_log_queue{unit="requests"} 0.0' in text


async def test_self_instrumentation_records_api_calls(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client: TestClient[Any, Any] = await make_client(
        {**OPEN, "performance_logs": {"self_instrument": True}}
    )
    assert (await client.get(f"{URL}/summary")).status == 200

    async def recorded() -> bool:
        n = await db.fetchval(
            "SELECT count(*) FROM monitoring.system_performance_logs"
            " WHERE operation_name = 'GET /api/v1/performance-logs/summary'"
        )
        return bool(n)

    await eventually(recorded)


async def test_self_instrumentation_is_off_by_default(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    assert (await client.get(URL)).status == 200
    assert (await client.post(URL, json=rec(1))).status == 200
    assert await stored(db) == 1


async def test_demo_mode_seeds_a_day_of_records_and_records_api_calls(
    make_client: MakeClient, db: asyncpg.Connection, database_url: str
) -> None:
    # as --demo builds it (its probes point at a port nobody listens on here)
    client = await make_client(demo_config(make_config(OPEN), database_url, "127.0.0.1:1"))

    async def seeded() -> bool:
        return await stored(db) >= 2000

    await eventually(seeded)
    summary = await (await client.get(f"{URL}/summary?since=2000-01-01T00:00:00Z")).json()
    assert {i["operation_type"] for i in summary["items"]} >= {
        "api_call",
        "data_sync",
        "report_generation",
    }

    async def instrumented() -> bool:
        n = await db.fetchval(
            "SELECT count(*) FROM monitoring.system_performance_logs"
            " WHERE operation_name = 'GET /api/v1/performance-logs/summary'"
        )
        return bool(n)

    await eventually(instrumented)
