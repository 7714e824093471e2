"""Property tests: random JSON, NDJSON and bytes never make the webhook or the performance-log
ingest raise; the answer is always a 2xx or a 4xx.

The parsers are fed directly (many examples, fast), then the running app over HTTP on a
real PostgreSQL (fewer examples), since a value the parsers let through that the database
refuses would be a 5xx only there. The seed is fixed (``derandomize``): a failure is
reproducible, and the suite does not depend on luck.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.inputs import alertmanager as webhook
from exporter.web.errors import ApiError
from exporter.web.payload import decode_json
from exporter.web.performance_logs import Limits, parse_json, parse_ndjson, to_rows
from tests.conftest import MakeClient

# every code point, NUL and lone surrogates included, though mostly printable text
CHARS = st.characters(codec=None, exclude_categories=())
TEXT = st.text(max_size=12) | st.text(max_size=12) | st.text(CHARS, max_size=12)
NAMES = st.sampled_from(["alertname", "service", "job", "severity", "k", "\x00", ""]) | TEXT
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = (
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31), timezones=OFFSETS).map(
        lambda d: d.isoformat()
    )
    | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
    | st.sampled_from(["0001-01-01T00:00:00Z", "294277-01-01T00:00:00Z", "yesterday", ""])
)
NUMBERS = (
    st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([2**63, 2**31, -1, 0, 1e308, 10**400])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT | TIMES
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=16,
)


class Deep:
    """A JSON value nested ``levels`` deep, encoded as raw text (json.dumps would recurse)."""

    def __init__(self, levels: int) -> None:
        self.text = "[" * levels + "]" * levels


DEEP = st.integers(1, 5000).map(Deep)


def encode(value: Any) -> bytes:
    """JSON text (ensure_ascii: lone surrogates become escapes, as senders write them)."""
    placeholders: dict[str, str] = {}

    def default(obj: Any) -> Any:
        key = f"@@deep{len(placeholders)}@@"
        placeholders[key] = obj.text
        return key

    text = json.dumps(value, default=default, allow_nan=False)
    for key, raw in placeholders.items():
        text = text.replace(json.dumps(key), raw)
    return text.encode()


# values that broke the service before (issue 10), and their neighbours; copied when
# drawn, since hostile() changes what it draws in place
NASTY = st.sampled_from(
    [
        Deep(10_000), Deep(1_500), Deep(70), {"k": Deep(10_000)}, [Deep(900)],
        "\x00", "a\x00b", "\ud800", "x\udfff", {"\x00": 1}, {"k": "\x00"},
        "2024-05-01T12:00:00+16:00", "2024-05-01T12:00:00-23:59", "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:00:00-05:00", "0000-01-01T00:00:00Z", "294277-01-01T00:00:00Z",
        2**31, 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, "x" * 3000,
    ]
).map(copy.deepcopy)  # fmt: skip


ANYTHING = st.one_of(NASTY, NASTY, NASTY, NASTY, JSON, DEEP)
PLAIN = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=10)
NOW = datetime.now(UTC)
# times a sender plausibly writes: recent, with the offsets of real time zones
RECENT = st.builds(
    lambda minutes, offset: (NOW - timedelta(minutes=minutes)).astimezone(offset).isoformat(),
    st.integers(0, 24 * 60),
    st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
ALERT = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]),
        "labels": st.dictionaries(NAMES.filter(bool), PLAIN, min_size=1, max_size=4),
        "startsAt": RECENT,
        "fingerprint": PLAIN,
    },
    optional={
        "annotations": st.dictionaries(PLAIN, PLAIN, max_size=3),
        "endsAt": RECENT | st.just("0001-01-01T00:00:00Z"),
        "generatorURL": PLAIN,
    },
)
NOTIFICATION = st.fixed_dictionaries(
    {
        "version": st.just("4"),
        "status": st.sampled_from(["firing", "resolved"]),
        "alerts": st.lists(ALERT, min_size=1, max_size=4),
    },
    optional={"receiver": PLAIN, "truncatedAlerts": st.integers(0, 5)},
)
RECORD = st.fixed_dictionaries(
    {
        "operation_type": st.sampled_from(["api_call", "data_sync", "report_generation"]),
        "duration_ms": st.floats(0, 1e9),
        "status": st.sampled_from(["success", "error", "timeout"]),
    },
    optional={
        "operation_name": PLAIN,
        "memory_usage_bytes": st.integers(0, 2**40),
        "cpu_usage_percent": st.floats(0, 800),
        "error_message": PLAIN,
        "user_id": PLAIN,
        "request_details": st.dictionaries(PLAIN, JSON, max_size=3),
        "recorded_at": RECENT,
    },
)


@st.composite
def hostile(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> Any:
    """A valid document with up to two values replaced or added: anything at all, mostly
    a known troublemaker, so that one bad value sits inside an otherwise good body."""
    document = draw(documents)
    for _ in range(draw(st.integers(1, 2))):
        containers: list[Any] = []
        stack = [document]
        while stack:
            node = stack.pop()
            if isinstance(node, dict | list):
                containers.append(node)
                stack.extend(node.values() if isinstance(node, dict) else node)
        target = draw(st.sampled_from(containers))
        value = draw(ANYTHING)
        if isinstance(target, dict):
            # mostly a field the reader knows, now and then one it has never heard of
            known = st.sampled_from(sorted(target)) if target else NAMES
            target[draw(st.one_of(known, known, known, NAMES))] = value
        elif target:
            target[draw(st.integers(0, len(target) - 1))] = value
    return document


@st.composite
def mangled(draw: st.DrawFn, documents: st.SearchStrategy[bytes]) -> bytes:
    """A document with random bytes spliced in (bad UTF-8, cut strings, stray NULs)."""
    body = draw(documents)
    at = draw(st.integers(0, len(body)))
    cut = draw(st.integers(0, 4))
    return body[:at] + draw(st.binary(max_size=6)) + body[at + cut :]


WEBHOOK_BODIES = st.one_of(
    NOTIFICATION.map(encode),
    hostile(NOTIFICATION).map(encode),
    hostile(NOTIFICATION).map(encode),
    hostile(NOTIFICATION).map(encode),
    mangled(NOTIFICATION.map(encode)),
    JSON.map(encode),
    st.binary(max_size=64),
)
NDJSON_BODIES = st.one_of(
    st.lists(RECORD.map(encode), min_size=1, max_size=5).map(b"\n".join),
    st.lists(hostile(RECORD).map(encode), min_size=1, max_size=5).map(b"\n".join),
    st.lists(hostile(RECORD).map(encode), min_size=1, max_size=5).map(b"\n".join),
    st.lists(hostile(RECORD).map(encode), min_size=1, max_size=5).map(b"\n".join),
    mangled(st.lists(RECORD.map(encode), min_size=1, max_size=5).map(b"\n".join)),
    st.lists(JSON.map(encode), max_size=3).map(b"\n".join),
    st.binary(max_size=64),
)
JSON_BODIES = st.one_of(
    RECORD.map(encode),
    hostile(RECORD).map(encode),
    hostile(RECORD).map(encode),
    hostile(st.lists(RECORD, min_size=1, max_size=4)).map(encode),
    mangled(st.lists(RECORD, max_size=3).map(encode)),
    JSON.map(encode),
    st.binary(max_size=64),
)
LIMITS = Limits(timedelta(days=14), 64 << 10, 64 << 20, 10_000)
FAST = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def webhook_status(body: bytes) -> int:
    """What the webhook's parsing makes of a body: 200 (ready to store) or its 4xx."""
    try:
        notification = decode_json(body, webhook.decoder, check=False)
        if webhook.problems(notification):
            return 400
        records = [webhook.to_record(alert) for alert in notification.alerts]
        msgspec.json.encode(records)  # how the records travel to PostgreSQL
    except ApiError as exc:
        return exc.status
    return 200


def logs_status(body: bytes, ndjson: bool) -> int:
    """What the ingest's parsing makes of a body: 200 (rows ready) or its 4xx."""
    now = datetime.now(UTC)
    try:
        if ndjson:
            records, lines = parse_ndjson(body, LIMITS.max_records)
            to_rows(records, lambda i: f"line {lines[i]}.", now, LIMITS)
        else:
            records, many = parse_json(body, LIMITS.max_records)
            to_rows(records, lambda i: f"[{i}]." if many else "", now, LIMITS, 3 if many else 2)
    except ApiError as exc:
        return exc.status
    return 200


@FAST
@given(WEBHOOK_BODIES)
def test_the_webhook_parser_answers_every_body(body: bytes) -> None:
    assert webhook_status(body) in (200, 400)


@FAST
@given(NDJSON_BODIES)
def test_the_ndjson_parser_answers_every_body(body: bytes) -> None:
    assert logs_status(body, ndjson=True) in (200, 400, 413)


@FAST
@given(JSON_BODIES)
def test_the_json_log_parser_answers_every_body(body: bytes) -> None:
    assert logs_status(body, ndjson=False) in (200, 400, 413)


def test_the_strategies_reach_both_answers() -> None:
    """Not a vacuous property: the bodies include ones that pass and ones that fail."""
    seen: set[tuple[str, int]] = set()

    @settings(max_examples=200, derandomize=True, database=None, deadline=None)
    @given(WEBHOOK_BODIES, NDJSON_BODIES, JSON_BODIES)
    def collect(hook: bytes, lines: bytes, logs: bytes) -> None:
        seen.add(("webhook", webhook_status(hook)))
        seen.add(("ndjson", logs_status(lines, ndjson=True)))
        seen.add(("json", logs_status(logs, ndjson=False)))

    collect()
    for parser in ("webhook", "ndjson", "json"):
        assert {(parser, 200), (parser, 400)} <= seen, seen


async def test_the_running_service_answers_2xx_or_4xx_to_random_bodies(
    make_client: MakeClient,
) -> None:
    client = await make_client({"auth": {"disabled": True}, "host": {"enabled": False}})
    base = str(client.make_url("/api/v1"))
    statuses: dict[tuple[str, int], int] = {}

    def post(path: str, body: bytes, ctype: str, gzipped: bool) -> None:
        headers = {"Content-Type": ctype}
        data = body
        if gzipped:
            data, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        request = urllib.request.Request(f"{base}{path}", data, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        statuses[(path, status)] = statuses.get((path, status), 0) + 1
        assert 200 <= status < 300 or 400 <= status < 500, (path, status, body[:300])

    @settings(
        max_examples=300,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(WEBHOOK_BODIES, NDJSON_BODIES, JSON_BODIES, st.booleans())
    def exchange(hook: bytes, lines: bytes, logs: bytes, gzipped: bool) -> None:  # fmt: skip
        post("/alertmanager", hook, "application/json", gzipped)
        post("/performance-logs", lines, "application/x-ndjson", gzipped)
        post("/performance-logs", logs, "application/json", gzipped)

    # hypothesis drives a synchronous client from a thread: the server keeps this loop
    await asyncio.to_thread(exchange)
    codes = {status for _, status in statuses}
    assert {200, 400} <= codes, statuses
