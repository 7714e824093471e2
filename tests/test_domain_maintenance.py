"""Maintenance windows and heartbeats, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exporter.domain import heartbeat
from exporter.domain import maintenance as m
from exporter.domain.limits import LATEST

T = datetime(2024, 5, 1, 22, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def window(**over: object) -> m.Window:
    values: dict[str, object] = {"id": 1, "matchers": {"service": "db"}, "starts_at": T,
                                 "ends_at": T + 2 * H} | over  # fmt: skip
    return m.Window(**values)  # type: ignore[arg-type]


def test_a_one_off_window_is_in_force_from_its_start_to_its_end() -> None:
    w = window()
    assert m.occurrence(w, T - timedelta(seconds=1)) is None
    assert m.occurrence(w, T) == (T, T + 2 * H)
    assert m.occurrence(w, T + 2 * H) is None
    assert m.current_or_next(w, T - D) == (T, T + 2 * H)
    assert m.current_or_next(w, T + 3 * H) is None
    assert m.occurrence(window(deleted=True), T + H) is None


def test_a_daily_window_comes_back_every_24_hours_until_repeat_until() -> None:
    w = window(recurrence="daily", repeat_until=T + 2 * D)
    assert m.occurrence(w, T + D + H) == (T + D, T + D + 2 * H)
    assert m.occurrence(w, T + D + 3 * H) is None
    assert m.current_or_next(w, T + D + 3 * H) == (T + 2 * D, T + 2 * D + 2 * H)
    # no occurrence starts after repeat_until
    assert m.occurrence(w, T + 3 * D + H) is None
    assert m.current_or_next(w, T + 2 * D + 3 * H) is None


def test_a_weekly_window_and_the_end_of_time() -> None:
    w = window(recurrence="weekly")
    assert m.occurrence(w, T + 14 * D + H) == (T + 14 * D, T + 14 * D + 2 * H)
    assert m.occurrence(w, T + 13 * D) is None
    # near the last representable day nothing overflows
    assert m.current_or_next(w, LATEST) is None
    assert m.occurrence(w, LATEST) is None


def test_what_is_in_maintenance_and_what_matches() -> None:
    windows = [
        window(id=1),
        window(id=2, matchers={"source": "shop", "dataset": "orders"}),
        window(id=3, matchers={"alertname": "X"}, starts_at=T + 5 * H, ends_at=T + 6 * H),
    ]
    assert m.affected(windows, T + H) == ({"db"}, {"shop"})
    assert m.affected(windows, T + 5 * H) == (set(), set())
    assert [w.id for w in m.in_force(windows, T + 5 * H)] == [3]
    assert m.matches({"service": "db"}, {"service": "db", "alertname": "Y"})
    assert not m.matches({"service": "db", "alertname": "X"}, {"service": "db"})


def test_problems_name_the_field() -> None:
    long = timedelta(days=30)
    assert m.problems({"service": "db"}, T, T + H, None, None, long) == []
    assert m.problems({}, T, T + H, None, None, long)[0][0] == "matchers"
    assert (
        m.problems({"bad-name": "x"}, T, T + H, None, None, long)[0][0]
        == "matchers.labels.bad-name"
    )
    assert m.problems({"service": "db"}, T, T, None, None, long) == [
        ("ends_at", "must be after starts_at")
    ]
    assert m.problems({"service": "db"}, T, T + 31 * D, None, None, long) == [
        ("ends_at", "a window lasts at most 30d")
    ]
    assert m.problems({"service": "db"}, T, T + 25 * H, "daily", None, long) == [
        ("ends_at", "a daily window lasts at most 1d")
    ]
    assert m.problems({"service": "db"}, T, T + H, None, T + D, long)[0][0] == "repeat_until"
    assert m.problems({"service": "db"}, T, T + H, "daily", T - D, long)[0][0] == "repeat_until"


@pytest.mark.parametrize(("beat", "late"), [(None, True), (T - 4 * H, True), (T - 2 * H, False)])
def test_a_heartbeat_is_late_after_interval_and_grace(beat: datetime | None, late: bool) -> None:
    h = heartbeat.Heartbeat("sync", 2 * H, timedelta(minutes=30), T - 3 * H, beat)
    assert h.late(T) is late
    assert heartbeat.dedup_key("sync") == "heartbeat:sync"
    assert heartbeat.title("sync", None) == "Heartbeat sync is late"
