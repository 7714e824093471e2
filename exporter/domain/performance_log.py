"""A performance log record: its shape, the rules beyond types, and histogram buckets."""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Annotated, Literal

import msgspec

from exporter.domain.limits import MAX_DEPTH, Count, NoNul, Timestamp, join, raw_json_problem

Status = Literal["success", "error", "timeout"]
STATUSES: tuple[Status, ...] = ("success", "error", "timeout")

# How far ahead of our clock a sender's clock may be before recorded_at is refused.
CLOCK_SKEW = timedelta(minutes=5)

# Buckets (seconds) for monitoring_operation_duration_seconds: API calls sit in the
# millisecond range, data syncs and reports take seconds to an hour.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)

OperationType = Annotated[
    str, msgspec.Meta(pattern="^[a-z][a-z0-9_]*$", min_length=1, max_length=64)
]
# a million seconds short of 32 years: far beyond any operation, and far enough below
# float8's range that the summary's avg() over any number of records cannot overflow
MAX_DURATION_MS = 1e12
Duration = Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_MS)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
# the sender's JSON text, stored as jsonb without a decode/encode round trip
Details = Annotated[
    msgspec.Raw,
    msgspec.Meta(
        extra_json_schema={
            "type": ["object", "null"],
            "description": f"at most max_request_details_bytes, nested at most {MAX_DEPTH} deep",
        }
    ),
]


class PerformanceLogIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One operation record as sent by a client (the seed's ``system_performance_logs`` row).

    ``recorded_at`` lies within the retention period and at most 5 minutes ahead;
    ``request_details`` is an object of at most ``performance_logs.max_request_details_bytes``
    (64 KiB by default) nested at most 64 levels.
    """

    operation_type: OperationType
    duration_ms: Duration
    status: Status
    operation_name: Annotated[str, NoNul, msgspec.Meta(max_length=500)] | None = None
    memory_usage_bytes: Count | None = None
    cpu_usage_percent: NonNegative | None = None
    error_message: Annotated[str, NoNul, msgspec.Meta(max_length=16384)] | None = None
    user_id: Annotated[str, NoNul, msgspec.Meta(max_length=200)] | None = None
    # an object, or null for none (msgspec.Raw cannot sit in a union with None)
    request_details: Details = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    recorded_at: Timestamp | None = None


class Committed(msgspec.Struct, frozen=True):
    """The answer to a write: how many records were committed."""

    committed: int


class PerformanceLog(msgspec.Struct, frozen=True):
    """A stored record: the table's columns under the same names."""

    id: int
    operation_type: str
    operation_name: str | None
    duration_ms: float
    memory_usage_bytes: int | None
    cpu_usage_percent: float | None
    status: str
    error_message: str | None
    user_id: str | None
    request_details: msgspec.Raw
    recorded_at: datetime
    created_at: datetime


class OperationSummary(msgspec.Struct, frozen=True):
    """Latency percentiles and error rate of one operation over the window."""

    operation_type: str
    operation_name: str | None
    count: int
    errors: int
    timeouts: int
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    max_ms: float


class Summary(msgspec.Struct, frozen=True):
    """Per-operation summary (error_rate counts errors and timeouts)."""

    since: datetime
    until: datetime
    items: list[OperationSummary]


@dataclass(frozen=True, slots=True)
class Problem:
    """A rule a record breaks: the field (relative to the record) and what is wrong."""

    field: str
    message: str


# An odd number of backslashes before u0000 is an escaped NUL (an even number escapes the
# backslashes themselves); PostgreSQL refuses NUL in text and jsonb.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_WHITESPACE = b" \t\r\n"
_WHITESPACE_STARTS = (b" ", b"\t", b"\r", b"\n")
_NUL = "must not contain NUL characters"


def problems(
    record: PerformanceLogIn,
    *,
    now: datetime,
    retention: timedelta,
    max_details_bytes: int,
    depth: int = 2,
) -> list[Problem]:
    """Every rule ``record`` breaks beyond its types (an empty list when it is valid);
    ``depth`` is the level of ``request_details`` in its document (2 in an NDJSON line)."""
    # written for the common case (few optional fields): this runs for every ingested record
    found: list[Problem] = []
    if not 0.0 <= record.duration_ms <= MAX_DURATION_MS:  # also false for NaN
        found.append(Problem("duration_ms", f"must be a number from 0 to {MAX_DURATION_MS:g}"))
    cpu = record.cpu_usage_percent
    if cpu is not None and not 0.0 <= cpu < math.inf:
        found.append(Problem("cpu_usage_percent", "must be a finite number >= 0"))
    if record.operation_name is not None and "\x00" in record.operation_name:
        found.append(Problem("operation_name", _NUL))
    if record.error_message is not None and "\x00" in record.error_message:
        found.append(Problem("error_message", _NUL))
    if record.user_id is not None and "\x00" in record.user_id:
        found.append(Problem("user_id", _NUL))
    raw = bytes(record.request_details)
    if raw[:1] in _WHITESPACE_STARTS:
        raw = raw.strip(_WHITESPACE)
    if raw != b"null":
        if len(raw) > max_details_bytes:
            found.append(Problem("request_details", f"is larger than {max_details_bytes} bytes"))
        elif not raw.startswith(b"{"):
            found.append(Problem("request_details", "must be an object"))
        elif b"\\u0000" in raw and _JSON_NUL.search(raw):
            found.append(Problem("request_details", _NUL))
        elif bad := raw_json_problem(raw, depth=depth):
            found.append(Problem(join("request_details", bad[0]), bad[1]))
    at = record.recorded_at
    if at is not None:
        if at > now + CLOCK_SKEW:
            found.append(Problem("recorded_at", "is in the future"))
        elif at < now - retention:
            found.append(Problem("recorded_at", "is older than the retention period"))
    return found


def columns_valid(
    durations: list[float],
    cpus: list[float | None],
    texts: tuple[list[str | None], ...],
    details: list[str | None],
    recorded: list[datetime | None],
    *,
    now: datetime,
    retention: timedelta,
    max_details_bytes: int,
    depth: int = 2,
) -> bool:
    """Whether a whole batch keeps the rules of :func:`problems`, checked column by column.

    The fast path for the ingest: builtins (min, sum, join, max over map) scan each column in
    C. It may answer False for a valid batch (a literal ``\\u0000`` in details); callers then
    run :func:`problems` per record, which has the final word and the messages.
    """
    if durations and not (
        min(durations) >= 0.0
        and max(durations) <= MAX_DURATION_MS
        and math.isfinite(sum(durations))  # NaN makes min and max unreliable
    ):
        return False
    given_cpus = [c for c in cpus if c is not None]
    if given_cpus and not (min(given_cpus) >= 0.0 and math.isfinite(sum(given_cpus))):
        return False
    for column in texts:
        if "\x00" in "".join([t for t in column if t is not None]):
            return False
    given = [d for d in details if d is not None]
    if given:
        if max(map(len, given)) > max_details_bytes:  # characters <= bytes: rechecked below
            return False
        joined = "".join(given)
        if set(map(_first, given)) != {"{"} or "\\u0000" in joined:
            return False
        # brackets bound the nesting from above: count them per record (in C, through map)
        # only when they could add up past the limit in the whole batch
        room = MAX_DEPTH - depth + 1
        if joined.count("{") + joined.count("[") > room and (
            max(map(str.count, given, repeat("{"))) + max(map(str.count, given, repeat("["))) > room
        ):
            return False
        longest = max(map(len, given))
        # UTF-8 takes at most 4 bytes a character: encode only when that could matter
        if longest * 4 > max_details_bytes and max(map(len, map(str.encode, given))) > (
            max_details_bytes
        ):
            return False
    times = [at for at in recorded if at is not None]
    return not times or (min(times) >= now - retention and max(times) <= now + CLOCK_SKEW)


def _first(text: str) -> str:
    return text[:1]


def details_text(record: PerformanceLogIn) -> str | None:
    """The request details as JSON text for a jsonb column (None when absent); raises
    UnicodeDecodeError for invalid UTF-8, which :func:`problems` reports by field."""
    raw = bytes(record.request_details)
    if raw == b"null":
        return None
    return raw.decode()


def _floor(at: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return at - (at - epoch) % step


def summary_window(
    since: datetime,
    until: datetime,
    *,
    now: datetime,
    raw_retention: timedelta,
    minute_retention: timedelta,
) -> tuple[datetime, datetime]:
    """The window a summary can answer exactly: [since, until) itself while the raw records
    of its partial minutes and the minute rollups of its partial hours are kept, else widened
    to whole minutes (raw records gone) or whole hours (minute rollups gone)."""
    minute, hour = timedelta(minutes=1), timedelta(hours=1)

    def widen(at: datetime, up: bool) -> datetime:
        for step, kept in ((minute, raw_retention), (hour, minute_retention)):
            if at < now - kept:
                floor = _floor(at, step)
                at = floor + step if up and floor != at else floor
        return at

    return widen(since, False), widen(until, True)


def bucket_index(seconds: float) -> int:
    """The index of the first bucket whose upper bound holds ``seconds`` (len = +Inf)."""
    return bisect_left(DURATION_BUCKETS, seconds)


def as_utc(at: datetime) -> datetime:
    """A timezone-aware datetime in UTC."""
    return at.astimezone(UTC)


OTHER = "other"
#: longest trace id exported as an exemplar (OpenMetrics allows 128 characters of labels)
MAX_TRACE_ID = 64


@dataclass(frozen=True, slots=True)
class TraceExemplar:
    """A recent record of a histogram bucket that names its trace (``trace_id`` in its
    request details): Grafana jumps from a latency spike to that trace."""

    trace_id: str
    seconds: float
    at: datetime


class DurationHistogram:
    """Counts of committed durations per (operation_type, status), with bounded label sets.

    operation_type is free-form text from clients, so once ``max_series`` label sets exist,
    new operation types are counted under ``operation_type="other"``.
    """

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        # per label set: one count per bucket (last one is +Inf, not cumulative), then the sum
        self.series: dict[tuple[str, str], list[float]] = {}
        # per label set: the latest exemplar of each bucket
        self.exemplars: dict[tuple[str, str], list[TraceExemplar | None]] = {}
        self._width = len(DURATION_BUCKETS) + 1

    def observe_many(
        self, operation_types: list[str], statuses: list[str], durations_ms: list[float]
    ) -> None:
        """Count a batch of committed records."""
        series = self.series
        width = self._width
        for op, status, ms in zip(operation_types, statuses, durations_ms, strict=True):
            key = (op, status)
            counts = series.get(key)
            if counts is None:
                if len(series) >= self.max_series - len(STATUSES):
                    key = (OTHER, status)
                counts = series.get(key)
                if counts is None:
                    counts = series[key] = [0.0] * (width + 1)
            seconds = ms / 1000.0
            counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
            counts[width] += seconds

    def load(
        self,
        rows: Iterable[tuple[str, str, int, float, float]],
        exemplars: Mapping[tuple[str, str, int], TraceExemplar] | None = None,
    ) -> None:
        """Replace the counts with stored ones: (type, status, bucket, count, seconds) rows,
        and the latest exemplar of each (type, status, bucket) that has one.

        Past ``max_series`` label sets, the remaining operation types (in name order) are
        counted as ``other``, the same on every replica.
        """
        width = self._width
        series: dict[tuple[str, str], list[float]] = {}
        latest: dict[tuple[str, str], list[TraceExemplar | None]] = {}
        exemplars = exemplars or {}
        for op, status, bucket, count, seconds in sorted(rows):
            key = (op, status)
            counts = series.get(key)
            if counts is None:
                if len(series) >= self.max_series - len(STATUSES):
                    key = (OTHER, status)
                counts = series.get(key)
                if counts is None:
                    counts = series[key] = [0.0] * (width + 1)
                    latest[key] = [None] * width
            index = min(bucket, width - 1)
            counts[index] += count
            counts[width] += seconds
            found = exemplars.get((op, status, bucket))
            if found is not None and 0 < len(found.trace_id) <= MAX_TRACE_ID:
                held = latest[key][index]
                if held is None or found.at > held.at:
                    latest[key][index] = found
        self.series = series
        self.exemplars = latest

    def snapshot(self) -> list[tuple[str, str, list[float], float]]:
        """(operation_type, status, cumulative bucket counts incl. +Inf, sum) per label set."""
        out = []
        for (op, status), counts in sorted(self.series.items()):
            cumulative, total = [], 0.0
            for value in counts[: self._width]:
                total += value
                cumulative.append(total)
            out.append((op, status, cumulative, counts[self._width]))
        return out
