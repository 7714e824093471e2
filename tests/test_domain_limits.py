"""The storage's bounds on decoded values: NUL, finite numbers, time range, nesting depth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from exporter.domain.limits import (
    MAX_DEPTH,
    NUL,
    OUT_OF_RANGE,
    TOO_DEEP,
    as_utc,
    raw_json_problem,
    time_problem,
    value_problems,
)


class Inner(msgspec.Struct):
    note: str
    at: datetime | None = None


class Outer(msgspec.Struct, rename="camel"):
    starts_at: datetime
    items: list[Inner]
    extra: dict[str, Any] = {}
    raw: msgspec.Raw = msgspec.Raw(b"null")


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_value_problems_name_every_field_by_its_wire_name_in_document_order() -> None:
    value = Outer(
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        [Inner("ok"), Inner("a\x00", at=NOW)],
        {"k\x00": {"deep": 1.0}, "inf": float("inf")},
    )
    assert value_problems(value) == [
        ("startsAt", OUT_OF_RANGE),
        ("items[1].note", NUL),
        ("extra.k\x00", NUL),
        ("extra.inf", "must be a finite number"),
    ]
    assert value_problems(Outer(NOW, [Inner("fine", NOW)])) == []


def test_depth_counts_the_document_itself_as_level_one() -> None:
    # extra is level 2, so a list inside it may nest MAX_DEPTH - 2 more levels
    fits = Outer(NOW, [], {"x": nested(MAX_DEPTH - 2)})
    assert value_problems(fits) == []
    too_deep = Outer(NOW, [], {"x": nested(MAX_DEPTH - 1)})
    assert value_problems(too_deep) == [("extra.x" + "[0]" * (MAX_DEPTH - 2), TOO_DEEP)]
    # the walk is iterative: any depth is safe to look at
    assert value_problems(nested(50_000))[0][1] == TOO_DEEP


def test_raw_json_is_judged_as_it_would_be_stored() -> None:
    assert raw_json_problem(b'{"a": [1, {"b": "caf\xc3\xa9"}]}') is None
    assert raw_json_problem(b'{"a": "caf\xe9"}') == ("", "is not valid UTF-8")
    assert raw_json_problem(b'{"a": {"b": "\\u0000"}}') == ("a.b", NUL)
    assert raw_json_problem(b'{"a": "\\\\u0000"}') is None  # an escaped backslash, then text
    deep = b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    assert raw_json_problem(deep) == ("a" + "[0]" * (MAX_DEPTH - 1), TOO_DEEP)
    assert raw_json_problem(deep, depth=MAX_DEPTH) is not None
    very_deep = b"[" * 50_000 + b"]" * 50_000
    assert raw_json_problem(very_deep) == ("", TOO_DEEP)
    # many brackets side by side are not depth
    wide = b'{"a": [' + b",".join([b"[]"] * 5000) + b"]}"
    assert raw_json_problem(wide) is None


@pytest.mark.parametrize(
    ("at", "ok"),
    [
        (datetime(1, 1, 2, tzinfo=UTC), True),
        (datetime(1, 1, 2, tzinfo=timezone(timedelta(hours=1))), False),
        (datetime(9999, 12, 30, 23, 59, tzinfo=UTC), True),
        (datetime(9999, 12, 30, 23, 59, tzinfo=timezone(-timedelta(hours=1))), False),
        (datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=23, minutes=59))), True),
        (datetime(2024, 5, 1), False),
    ],
)
def test_time_range(at: datetime, ok: bool) -> None:
    assert (time_problem(at) is None) == ok


def test_as_utc_keeps_the_instant() -> None:
    at = datetime(2024, 5, 1, 20, tzinfo=timezone(timedelta(hours=16)))
    assert as_utc(at) == at and as_utc(at).utcoffset() == timedelta(0)
    assert as_utc(NOW) is NOW
