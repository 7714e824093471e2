"""Data-quality scoring: scores from counts, the freshness curve, levels, aggregation, issues.

Pure functions and plain dataclasses only; the same rules serve scheduled checks, pushed
indicators, the exported gauges and the overview.

Rules, in one place:

- A score is ``valid / total x 100``. With ``total == 0`` there is nothing to measure: the score
  is *undefined* (``None``), the status ``unknown``, never 0 and never 100.
- Freshness: the age of the newest row scores 100 up to ``warn_after``, falls linearly to 0 at
  ``error_after``, and stays 0 beyond (``score = 100 x (error_after - age) / (error_after -
  warn_after)`` in between). An age below zero (clock skew) counts as fresh.
- Status: higher is better. ``score < critical`` or ``score == 0`` → critical (nothing valid is
  always critical), ``score < warning`` → warning, else healthy; undefined → unknown.
- Several measurements of one (source, dataset, dimension) — several checks, or pushes next to
  checks — combine as the weighted mean of the defined scores; their levels combine the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Status = Literal["healthy", "warning", "critical", "unknown"]
Dimension = Literal["completeness", "accuracy", "freshness", "consistency"]
Issue = dict[str, Any]

DIMENSIONS: tuple[Dimension, ...] = ("completeness", "accuracy", "freshness", "consistency")
STATUS_CODE: dict[Status, int] = {"healthy": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True, slots=True)
class Levels:
    """Score levels: below ``warning`` is a warning, below ``critical`` is critical."""

    warning: float = 99.0
    critical: float = 95.0


def score_of(total: int, valid: int) -> float | None:
    """``valid / total x 100``, or None (undefined) when there are no records."""
    if total < 0 or valid < 0:
        raise ValueError("record counts cannot be negative")
    if valid > total:
        raise ValueError("valid records cannot exceed total records")
    if total == 0:
        return None
    return valid * 100.0 / total


def freshness_score(age: float, warn_after: float, error_after: float) -> float:
    """100 at or below ``warn_after`` seconds, linearly down to 0 at ``error_after`` and beyond."""
    if error_after <= warn_after:
        raise ValueError("error_after must be longer than warn_after")
    if age <= warn_after:
        return 100.0
    if age >= error_after:
        return 0.0
    return 100.0 * (error_after - age) / (error_after - warn_after)


def status_of(score: float | None, levels: Levels) -> Status:
    """The status of a score against its levels (higher is better)."""
    if score is None:
        return "unknown"
    if score == 0 or score < levels.critical:
        return "critical"
    if score < levels.warning:
        return "warning"
    return "healthy"


@dataclass(frozen=True, slots=True)
class Member:
    """One measurement taking part in an aggregate: a check's or a pusher's latest."""

    score: float | None
    levels: Levels
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The combined score, levels and status of several members."""

    score: float | None
    levels: Levels
    status: Status


def aggregate(members: Sequence[Member]) -> Aggregate:
    """Weighted mean of the defined scores (and of their levels); undefined if none is."""
    defined = [m for m in members if m.score is not None]
    pool = defined or list(members)
    weight = sum(m.weight for m in pool)
    if not pool or weight <= 0:
        return Aggregate(None, Levels(), "unknown")
    levels = Levels(
        warning=_clean(sum(m.levels.warning * m.weight for m in pool) / weight),
        critical=_clean(sum(m.levels.critical * m.weight for m in pool) / weight),
    )
    if not defined:
        return Aggregate(None, levels, "unknown")
    score = _clean(sum((m.score or 0.0) * m.weight for m in defined) / weight)
    return Aggregate(score, levels, status_of(score, levels))


def _clean(value: float) -> float:
    """Drop float noise (97.50000000000001) so equal inputs give equal, readable outputs."""
    return round(value, 9)


_SEVERITY: dict[str, int] = {"unknown": -1, "healthy": 0, "warning": 1, "critical": 2}


def mean_aggregate(parts: Iterable[Aggregate]) -> Aggregate:
    """Aggregates above a dimension (a source, all sources): mean score, worst status.

    The status is the worst of the parts (critical > warning > healthy), like the overview's
    verdict: a critical dimension is not hidden by healthy neighbours pulling the mean up.
    """
    parts = list(parts)
    mean = aggregate([Member(p.score, p.levels) for p in parts])
    known = [p.status for p in parts if p.status != "unknown"]
    status: Status = max(known, key=_SEVERITY.__getitem__) if known else "unknown"
    return Aggregate(mean.score, mean.levels, status)


# ---------------------------------------------------------------- issues: short, stable shapes


def missing_values(column: str, count: int) -> Issue:
    """A column with null or empty values."""
    return {"type": "missing_values", "column": column, "count": count}


def failed_rule(rule: str, count: int) -> Issue:
    """Rows failing an accuracy rule (a predicate, an allowed set or a range)."""
    return {"type": "failed_rule", "rule": rule, "count": count}


def sample_keys(column: str, keys: Sequence[Any]) -> Issue:
    """A few keys of failing rows, to look them up."""
    return {"type": "sample_failing_keys", "column": column, "keys": list(keys)}


def stale(age_seconds: float, newest: datetime, warn_after: float, error_after: float) -> Issue:
    """The newest row is older than ``warn_after``."""
    return {
        "type": "stale",
        "age_seconds": round(age_seconds, 3),
        "newest": newest.isoformat(),
        "warn_after_seconds": warn_after,
        "error_after_seconds": error_after,
    }


def no_records(what: str = "the table or query returned no rows") -> Issue:
    """Nothing to measure: the score is undefined."""
    return {"type": "no_records", "message": f"{what}: the score is undefined"}


def key_mismatch(kind: str, count: int, keys: Sequence[Any]) -> Issue:
    """Keys missing on one side, or present on both with different values."""
    return {"type": kind, "count": count, "sample_keys": list(keys)}


def value_mismatch(left: float, right: float, tolerance: float) -> Issue:
    """Two aggregates that should agree do not, beyond the tolerance."""
    return {
        "type": "value_mismatch",
        "left": left,
        "right": right,
        "difference": left - right,
        "tolerance": tolerance,
    }


def value_agreement(left: float, right: float, tolerance: float) -> float:
    """Score of two aggregates: 100 within tolerance, else ``100 x (1 - relative difference)``."""
    if not (math.isfinite(left) and math.isfinite(right)):
        return 0.0
    larger = max(abs(left), abs(right))
    if larger == 0:
        return 100.0
    relative = abs(left - right) / larger
    if relative <= tolerance:
        return 100.0
    return _clean(max(0.0, 100.0 * (1.0 - relative)))


# ---------------------------------------------------------------- the overview


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest stored measurement of one member (a check, or a pushed series)."""

    source: str
    dataset: str
    dimension: str
    check_name: str | None
    score: float | None
    levels: Levels
    measured_at: datetime
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class DimensionScore:
    """A source's score on one dimension, over its datasets and checks."""

    dimension: str
    score: float | None
    status: Status
    warning_level: float
    critical_level: float
    measurements: int
    measured_at: datetime


@dataclass(frozen=True, slots=True)
class SourceScore:
    """A source: the mean of its dimension scores, and each of them."""

    source: str
    score: float | None
    status: Status
    dimensions: list[DimensionScore] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Overall:
    """The cross-source average."""

    score: float | None
    status: Status
    sources: int


@dataclass(frozen=True, slots=True)
class Overview:
    """Latest score per source x dimension, per source, and the cross-source average."""

    overall: Overall
    sources: list[SourceScore]


def overview(latest: Iterable[Latest]) -> Overview:
    """Aggregate the latest measurements: weighted within a dimension, plain means above."""
    grouped: dict[str, dict[str, list[Latest]]] = {}
    for row in latest:
        grouped.setdefault(row.source, {}).setdefault(row.dimension, []).append(row)
    sources: list[SourceScore] = []
    for source in sorted(grouped):
        dims: list[DimensionScore] = []
        parts: list[Aggregate] = []
        for dimension in sorted(grouped[source], key=_dimension_order):
            rows = grouped[source][dimension]
            agg = aggregate([Member(r.score, r.levels, r.weight) for r in rows])
            parts.append(agg)
            dims.append(
                DimensionScore(
                    dimension=dimension,
                    score=agg.score,
                    status=agg.status,
                    warning_level=agg.levels.warning,
                    critical_level=agg.levels.critical,
                    measurements=len(rows),
                    measured_at=max(r.measured_at for r in rows),
                )
            )
        total = mean_aggregate(parts)
        sources.append(SourceScore(source, total.score, total.status, dims))
    overall = mean_aggregate(Aggregate(s.score, _levels_of(s), s.status) for s in sources)
    return Overview(Overall(overall.score, overall.status, len(sources)), sources)


def _levels_of(source: SourceScore) -> Levels:
    agg = mean_aggregate(
        Aggregate(d.score, Levels(d.warning_level, d.critical_level), d.status)
        for d in source.dimensions
    )
    return agg.levels


def _dimension_order(dimension: str) -> int:
    order: tuple[str, ...] = DIMENSIONS
    return order.index(dimension) if dimension in order else len(order)


# ---------------------------------------------------------------- the exported state

SeriesKey = tuple[str, str, str]


@dataclass(slots=True)
class _Entry:
    member: Member
    measured_at: datetime
    expires_at: float | None


class Scoreboard:
    """A replica's view of the latest measurement of every member, aggregated per series.

    Members are what quality_series holds: check results and pushed measurements. Every
    member counts for the overview; a pushed one is exported as a series only until its
    ``expires_at`` (Unix time), like every pushed series. Times are passed in, so this stays
    pure and testable.
    """

    def __init__(self) -> None:
        self._series: dict[SeriesKey, dict[str, _Entry]] = {}

    def record(
        self,
        key: SeriesKey,
        member: str,
        value: Member,
        measured_at: datetime,
        expires_at: float | None,
    ) -> None:
        """Remember a measurement unless the member already has a newer one."""
        members = self._series.setdefault(key, {})
        current = members.get(member)
        if current is not None and current.measured_at > measured_at:
            return
        members[member] = _Entry(value, measured_at, expires_at)

    def clear(self) -> None:
        """Forget everything (before a full reload)."""
        self._series.clear()

    def members(self) -> list[Latest]:
        """Every member's latest measurement (the overview's input)."""
        return [
            Latest(key[0], key[1], key[2], name or None, e.member.score, e.member.levels,
                   e.measured_at, e.member.weight)
            for key, members in self._series.items()
            for name, e in members.items()
        ]  # fmt: skip

    def series(self, now: float) -> list[tuple[SeriesKey, Aggregate]]:
        """Every exported series with its aggregate, sorted by labels (expired pushed members
        left out)."""
        out = []
        for key in sorted(self._series):
            live = [
                e.member
                for e in self._series[key].values()
                if e.expires_at is None or e.expires_at > now
            ]
            if live:
                out.append((key, aggregate(live)))
        return out
