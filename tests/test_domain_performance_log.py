"""The rules a performance log record must follow beyond its types, and the histogram."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from exporter.domain.performance_log import (
    DURATION_BUCKETS,
    DurationHistogram,
    PerformanceLogIn,
    bucket_index,
    columns_valid,
    details_text,
    problems,
)

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def check(record: dict[str, object], max_details: int = 1024) -> list[tuple[str, str]]:
    rec = msgspec.json.decode(msgspec.json.encode(record), type=PerformanceLogIn)
    found = problems(rec, now=NOW, retention=timedelta(days=14), max_details_bytes=max_details)
    return [(p.field, p.message) for p in found]


BASE = {"operation_type": "api_call", "duration_ms": 5, "status": "success"}


def test_a_plain_record_is_valid() -> None:
    assert check(BASE) == []
    assert check({**BASE, "request_details": {"path": "/x"}, "recorded_at": NOW.isoformat()}) == []


def test_negative_and_infinite_durations_are_refused() -> None:
    # the type refuses a negative duration when decoding; problems() holds for built records
    with pytest.raises(msgspec.ValidationError, match="duration_ms"):
        check({**BASE, "duration_ms": -1})
    negative = PerformanceLogIn("a", -1.0, "success")
    assert problems(negative, now=NOW, retention=timedelta(days=1), max_details_bytes=10)
    rec = PerformanceLogIn("a", float("inf"), "success")
    assert problems(rec, now=NOW, retention=timedelta(days=1), max_details_bytes=10)
    nan = PerformanceLogIn("a", 1.0, "success", cpu_usage_percent=float("nan"))
    assert problems(nan, now=NOW, retention=timedelta(days=1), max_details_bytes=10)


def test_recorded_at_window() -> None:
    assert check({**BASE, "recorded_at": (NOW + timedelta(minutes=4)).isoformat()}) == []
    assert check({**BASE, "recorded_at": (NOW + timedelta(hours=1)).isoformat()}) == [
        ("recorded_at", "is in the future")
    ]
    assert check({**BASE, "recorded_at": (NOW - timedelta(days=15)).isoformat()}) == [
        ("recorded_at", "is older than the retention period")
    ]


def test_request_details_size_shape_and_nul() -> None:
    assert check({**BASE, "request_details": {"x": "y" * 2000}})[0][0] == "request_details"
    assert check({**BASE, "request_details": [1, 2]}) == [("request_details", "must be an object")]
    assert check({**BASE, "request_details": {"x": "a\u0000b"}}) == [
        ("request_details", "must not contain NUL characters")
    ]
    # an escaped backslash followed by "u0000" is text, not a NUL
    assert check({**BASE, "request_details": {"x": "\\u0000"}}) == []
    assert check({**BASE, "request_details": None}) == []


def test_nul_in_text_fields_is_refused() -> None:
    assert check({**BASE, "operation_name": "a\x00b"}) == [
        ("operation_name", "must not contain NUL characters")
    ]


def test_types_and_patterns_are_enforced_by_the_decoder() -> None:
    for bad in (
        {**BASE, "status": "maybe"},
        {**BASE, "operation_type": "Api Call"},
        {**BASE, "extra": 1},
        {**BASE, "recorded_at": "2026-01-01T00:00:00"},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(msgspec.json.encode(bad), type=PerformanceLogIn)


def test_absent_details_are_none_so_the_column_default_applies() -> None:
    rec = msgspec.json.decode(msgspec.json.encode(BASE), type=PerformanceLogIn)
    assert details_text(rec) is None


def test_histogram_buckets_and_cardinality_cap() -> None:
    assert bucket_index(0.001) == 0
    assert bucket_index(1e9) == len(DURATION_BUCKETS)
    hist = DurationHistogram(max_series=5)
    hist.observe_many(["a", "a", "b"], ["success", "error", "success"], [0.5, 2000.0, 10.0])
    hist.observe_many(["c", "d"], ["success", "success"], [1.0, 1.0])
    snap = {(op, st): (cum, total) for op, st, cum, total in hist.snapshot()}
    assert set(snap) == {("a", "success"), ("a", "error"), ("other", "success")}
    cumulative, total = snap[("other", "success")]
    assert cumulative[-1] == 3 and total == pytest.approx(0.012)
    assert snap[("a", "error")][0][bucket_index(2.0)] == 1


def test_the_column_check_agrees_with_the_record_check() -> None:
    now, keep = NOW, timedelta(days=14)
    good = [
        msgspec.json.decode(
            msgspec.json.encode(
                {**BASE, "duration_ms": i, "request_details": {"i": i}, "user_id": "u"}
            ),
            type=PerformanceLogIn,
        )
        for i in range(10)
    ]

    def columns(records: list[PerformanceLogIn]) -> bool:
        return columns_valid(
            [r.duration_ms for r in records],
            [r.cpu_usage_percent for r in records],
            ([r.operation_name for r in records], [r.user_id for r in records]),
            [details_text(r) for r in records],
            [r.recorded_at for r in records],
            now=now,
            retention=keep,
            max_details_bytes=64,
        )

    assert columns(good)
    bad_cases = [
        PerformanceLogIn("a", -1.0, "success"),
        PerformanceLogIn("a", float("nan"), "success"),
        PerformanceLogIn("a", 1.0, "success", cpu_usage_percent=float("inf")),
        PerformanceLogIn("a", 1.0, "success", user_id="x\x00"),
        PerformanceLogIn("a", 1.0, "success", request_details=msgspec.Raw(b"[1]")),
        PerformanceLogIn("a", 1.0, "success", request_details=msgspec.Raw(b'{"k":"\\u0000"}')),
        PerformanceLogIn(
            "a", 1.0, "success", request_details=msgspec.Raw(b'{"k":"' + b"x" * 80 + b'"}')
        ),
        PerformanceLogIn("a", 1.0, "success", recorded_at=NOW + timedelta(hours=1)),
        PerformanceLogIn("a", 1.0, "success", recorded_at=NOW - timedelta(days=20)),
    ]
    for bad in bad_cases:
        assert not columns([*good, bad]), bad
        assert problems(bad, now=now, retention=keep, max_details_bytes=64), bad
