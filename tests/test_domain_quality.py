"""The pure quality rules: scores, the freshness curve, statuses, aggregation, expiry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exporter.domain import quality as q

L = q.Levels(warning=99, critical=95)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_score_is_valid_over_total() -> None:
    assert q.score_of(1000, 985) == 98.5
    assert q.score_of(3, 3) == 100.0


def test_zero_records_is_undefined_not_zero_nor_hundred() -> None:
    assert q.score_of(0, 0) is None
    assert q.status_of(None, L) == "unknown"


@pytest.mark.parametrize(("total", "valid"), [(10, 11), (-1, 0), (5, -1)])
def test_impossible_counts_are_rejected(total: int, valid: int) -> None:
    with pytest.raises(ValueError, match="cannot"):
        q.score_of(total, valid)


@pytest.mark.parametrize(
    ("age", "score"),
    [(-5, 100), (0, 100), (3600, 100), (3600 + 9000, 50), (6 * 3600, 0), (10 * 3600, 0)],
)
def test_freshness_curve(age: float, score: float) -> None:
    assert q.freshness_score(age, 3600, 6 * 3600) == score


def test_freshness_needs_an_ordered_window() -> None:
    with pytest.raises(ValueError, match="longer"):
        q.freshness_score(1, 60, 60)


@pytest.mark.parametrize(
    ("score", "status"),
    [(100, "healthy"), (99, "healthy"), (98.99, "warning"), (95, "warning"), (94.9, "critical")],
)
def test_status_from_levels(score: float, status: str) -> None:
    assert q.status_of(score, L) == status


def test_zero_is_always_critical() -> None:
    freshness = q.Levels(warning=100, critical=0)
    assert q.status_of(0, freshness) == "critical"
    assert q.status_of(50, freshness) == "warning"
    assert q.status_of(100, freshness) == "healthy"


def test_weighted_aggregate_ignores_undefined_members() -> None:
    agg = q.aggregate(
        [q.Member(100, L, weight=3), q.Member(96, L, weight=1), q.Member(None, L, weight=5)]
    )
    assert agg.score == 99.0
    assert agg.status == "healthy"
    assert q.aggregate([q.Member(None, L)]).status == "unknown"
    assert q.aggregate([]).score is None


def test_levels_combine_by_weight() -> None:
    agg = q.aggregate([q.Member(80, q.Levels(90, 70), 1), q.Member(80, q.Levels(70, 50), 1)])
    assert agg.levels == q.Levels(80, 60)
    assert agg.status == "healthy"


def test_value_agreement() -> None:
    assert q.value_agreement(1000, 995, 0.005) == 100
    assert q.value_agreement(1000, 990, 0.005) == 99.0
    assert q.value_agreement(0, 0, 0) == 100
    assert q.value_agreement(10, -10, 0) == 0


def test_overview_weights_within_dimension_and_averages_above() -> None:
    rows = [
        q.Latest("shop", "orders", "completeness", "a", 98.5, L, T0, weight=1),
        q.Latest("shop", "orders", "completeness", "b", 100, L, T0, weight=2),
        q.Latest("shop", "orders", "freshness", "c", None, L, T0),
        q.Latest("ads", "spend", "accuracy", None, 90, L, T0),
    ]
    ov = q.overview(rows)
    assert [s.source for s in ov.sources] == ["ads", "shop"]
    shop = ov.sources[1]
    assert [d.dimension for d in shop.dimensions] == ["completeness", "freshness"]
    assert shop.dimensions[0].score == 99.5
    assert shop.dimensions[1].status == "unknown"
    assert shop.score == 99.5
    assert ov.overall.score == pytest.approx((99.5 + 90) / 2)
    assert ov.overall.status == "critical"
    assert ov.overall.sources == 2


def test_a_critical_dimension_is_not_averaged_away() -> None:
    rows = [
        q.Latest("shop", "orders", "completeness", "a", 100, L, T0),
        q.Latest("shop", "orders", "accuracy", "b", 100, L, T0),
        q.Latest("shop", "orders", "freshness", "c", 94, L, T0),
        q.Latest("ads", "spend", "accuracy", "d", 100, L, T0),
    ]
    ov = q.overview(rows)
    shop = ov.sources[1]
    assert shop.score == pytest.approx(98)  # above the warning level on average...
    assert shop.status == "critical"  # ...but freshness is below critical
    assert ov.sources[0].status == "healthy"
    assert ov.overall.status == "critical"


def test_scoreboard_expires_pushed_series_and_keeps_checks() -> None:
    board = q.Scoreboard()
    board.record(("s", "d", "accuracy"), "", q.Member(90, L), T0, expires_at=600)
    board.record(("s", "d", "completeness"), "chk", q.Member(80, L), T0, expires_at=None)
    assert len(board.series(599)) == 2
    assert [k for k, _ in board.series(601)] == [("s", "d", "completeness")]
    assert len(board.members()) == 2  # the overview still counts the pushed one


def test_scoreboard_keeps_the_newest_measurement() -> None:
    board = q.Scoreboard()
    later = datetime(2024, 1, 2, tzinfo=UTC)
    board.record(("s", "d", "accuracy"), "", q.Member(90, L), later, expires_at=600)
    board.record(("s", "d", "accuracy"), "", q.Member(10, L), T0, expires_at=601)
    assert board.series(2)[0][1].score == 90
