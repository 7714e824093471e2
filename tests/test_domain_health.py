"""The pure health rules: units, direction, hysteresis, the series store's TTL and cap."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.domain.health import (
    Rule,
    Track,
    advance,
    check_metric_type,
    check_value,
    classify,
    evaluate,
    mount_metric_type,
    to_base,
    verdict,
    worst,
)
from exporter.domain.health_rules import Override, RuleBook
from exporter.domain.health_series import (
    Sample,
    Series,
    SeriesLimit,
    SeriesStore,
    Stored,
    plan_pushes,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (250, "ms", (0.25, "s")),
        (1500, "us", (0.0015, "s")),
        (2, "s", (2.0, "s")),
        (2, "kb", (2048.0, "bytes")),
        (1, "mb", (1048576.0, "bytes")),
        (1, "gb", (1073741824.0, "bytes")),
        (95, "percent", (0.95, "ratio")),
        (0.5, "ratio", (0.5, "ratio")),
        (7, "count", (7.0, "count")),
        (3, None, (3.0, "")),
    ],
)
def test_units_convert_to_base_units(
    value: float, unit: str | None, expected: tuple[float, str]
) -> None:
    got = to_base(value, unit)
    assert got[1] == expected[1]
    assert math.isclose(got[0], expected[0])


def test_unknown_unit_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown unit 'furlong'"):
        to_base(1, "furlong")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        check_value("cpu", value, "ratio")


def test_negative_durations_are_rejected_but_other_negatives_pass() -> None:
    with pytest.raises(ValueError, match="negative"):
        check_value("response_time", -0.1, "s")
    with pytest.raises(ValueError, match="negative"):
        check_value("response_time", -1, "")
    check_value("temperature_delta", -3, "")


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "x" * 101, "é"])
def test_metric_type_pattern(name: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        check_metric_type(name)


def test_direction_above_counts_a_value_at_the_level() -> None:
    rule = Rule(warning=0.5, critical=1.0)
    assert classify(0.49, rule) == "healthy"
    assert classify(0.5, rule) == "warning"
    assert classify(0.99, rule) == "warning"
    assert classify(1.0, rule) == "critical"


def test_direction_below_is_bad_when_low() -> None:
    rule = Rule(warning=0.99, critical=0.95, direction="below")
    assert classify(1.0, rule) == "healthy"
    assert classify(0.99, rule) == "warning"
    assert classify(0.97, rule) == "warning"
    assert classify(0.9, rule) == "critical"


def test_a_rule_with_one_level_or_none() -> None:
    assert classify(10, Rule(critical=5)) == "critical"
    assert classify(4, Rule(critical=5)) == "healthy"
    assert classify(1e9, Rule()) == "healthy"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"warning": 2, "critical": 1},
        {"warning": 0.9, "critical": 0.99, "direction": "below"},
        {"for_": 0},
        {"warning": math.inf},
    ],
)
def test_inconsistent_rules_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        Rule(**kwargs)


def test_hysteresis_needs_n_consecutive_samples() -> None:
    rule = Rule(warning=0.5, critical=1.0, for_=3)
    track = evaluate(None, 0.1, rule)
    assert track.status == "healthy"
    statuses = []
    for value in (2.0, 2.0, 2.0, 2.0):
        track = evaluate(track, value, rule)
        statuses.append(track.status)
    assert statuses == ["healthy", "healthy", "critical", "critical"]


def test_a_single_blip_does_not_flap() -> None:
    rule = Rule(critical=1.0, for_=2)
    track = evaluate(None, 0.1, rule)
    for value in (5, 0.1, 5, 0.1, 5, 0.1):
        track = evaluate(track, value, rule)
        assert track.status == "healthy"


def test_recovery_also_waits_for_n_samples() -> None:
    rule = Rule(critical=1.0, for_=2)
    track = evaluate(None, 5, rule)
    assert track.status == "critical"
    track = evaluate(track, 0.1, rule)
    assert track.status == "critical"
    track = evaluate(track, 0.1, rule)
    assert track.status == "healthy"


def test_a_changing_candidate_restarts_the_streak() -> None:
    track = Track("healthy", "healthy", 0)
    track = advance(track, "warning", 2)
    track = advance(track, "critical", 2)
    assert track.status == "healthy" and track.streak == 1
    track = advance(track, "critical", 2)
    assert track.status == "critical"


def test_for_one_changes_at_once() -> None:
    track = evaluate(None, 0, Rule(critical=1))
    assert evaluate(track, 1, Rule(critical=1)).status == "critical"


def test_worst_status() -> None:
    assert worst([]) == "healthy"
    assert worst(["healthy", "critical", "warning"]) == "critical"
    assert worst(["warning", "healthy"]) == "warning"


def test_mount_metric_types_are_valid_names() -> None:
    assert mount_metric_type("/") == "disk_usage_root"
    assert mount_metric_type("/var/lib") == "disk_usage_var_lib"
    check_metric_type(mount_metric_type("/mnt/my disk-1"))


def test_rule_precedence_override_push_config_builtin() -> None:
    book = RuleBook({("api", "response_time"): Rule(critical=1)})
    key = ("api", "response_time")
    pushed = Rule(critical=2)
    assert book.rule_for(key) == (Rule(critical=1), "config")
    assert book.rule_for(key, pushed) == (pushed, "push")
    assert book.rule_for(("x", "up"))[1] == "builtin"
    assert book.rule_for(("x", "other"))[1] == "none"
    assert book.set_override(key, Override(Rule(critical=3), 2, NOW))
    assert book.rule_for(key, pushed) == (Rule(critical=3), "api")
    # an older version (from a slower replica refresh) never replaces a newer one
    assert not book.set_override(key, Override(Rule(critical=9), 1, NOW))
    assert book.rule_for(key)[0] == Rule(critical=3)
    # a removal is a newer version: the configured rule applies again, and an older copy
    # arriving late cannot bring the override back
    assert book.set_override(key, Override(None, 3, NOW))
    assert book.rule_for(key) == (Rule(critical=1), "config")
    assert book.active_override(key) is None
    assert key in book.keys()  # noqa: SIM118 - a method
    assert not book.set_override(key, Override(Rule(critical=3), 2, NOW))
    assert book.rule_for(key)[1] == "config"
    assert book.set_override(key, Override(Rule(critical=4), 4, NOW))
    assert book.rule_for(key) == (Rule(critical=4), "api")


def sample(service: str, value: float = 1.0, source: str = "push") -> Sample:
    return Sample(service, "latency", value, "s", source, NOW)  # type: ignore[arg-type]


def stored(
    tracks: dict[tuple[str, str, str], Track] | None = None,
    overrides: dict[tuple[str, str], Override] | None = None,
    live: int | None = 0,
) -> Stored:
    return Stored(tracks or {}, overrides or {}, live)


def test_the_cap_rejects_a_push_creating_too_many_series_and_admits_the_rest() -> None:
    existing = {("a", "latency", ""): Track("healthy", "healthy", 0)}
    plan = plan_pushes(
        [[sample("a", 2)], [sample("b"), sample("c")], [sample("a", 3)]],
        stored(existing, live=1),
        RuleBook(),
        cap=2,
    )
    first, second, third = plan.outcomes
    assert isinstance(second, SeriesLimit)  # two new series past a cap of two
    assert not isinstance(first, SeriesLimit) and not isinstance(third, SeriesLimit)
    assert [e.sample.value for e in plan.evaluated] == [2, 3]


def test_updating_existing_series_is_never_capped() -> None:
    existing = {("a", "latency", ""): Track("healthy", "healthy", 0)}
    plan = plan_pushes([[sample("a", 2)]], stored(existing, live=5), RuleBook(), cap=1)
    assert not isinstance(plan.outcomes[0], SeriesLimit)


def test_uncapped_batches_never_hit_the_limit() -> None:
    plan = plan_pushes([[sample(str(i)) for i in range(50)]], stored(live=None), RuleBook(), None)
    assert len(plan.evaluated) == 50


def test_hysteresis_continues_from_the_stored_state_and_within_one_batch() -> None:
    book = RuleBook({("a", "latency"): Rule(critical=1, for_=3)})
    # one failing sample already counted (by whichever replica received it)
    existing = {("a", "latency", ""): Track("healthy", "critical", 1)}
    plan = plan_pushes([[sample("a", 5)], [sample("a", 5)]], stored(existing), book, None)
    assert [e.status for e in plan.evaluated] == ["healthy", "critical"]


def test_a_stored_rule_read_by_the_transaction_beats_the_cached_one() -> None:
    book = RuleBook({("a", "latency"): Rule(critical=10)})
    book.set_override(("a", "latency"), Override(Rule(critical=100), 1, NOW))
    fresher = {("a", "latency"): Override(Rule(critical=1), 2, NOW)}
    plan = plan_pushes([[sample("a", 5)]], stored(overrides=fresher), book, None)
    assert plan.evaluated[0].status == "critical"
    removed = {("a", "latency"): Override(None, 3, NOW)}
    plan = plan_pushes([[sample("a", 5)]], stored(overrides=removed), book, None)
    assert plan.evaluated[0].rule == Rule(critical=10)  # back to the configured rule


def series(name: str, version: int, expires_at: float, value: float = 1.0) -> Series:
    return Series(sample(name, value), Track("healthy", "healthy", 0), expires_at, version)


def test_the_cache_keeps_the_newest_version_and_drops_expired_series() -> None:
    store = SeriesStore()
    seen: list[tuple[tuple[str, str, str], float | None]] = []
    store.listen(lambda k, s: seen.append((k, None if s is None else s.sample.value)))
    key = ("a", "latency", "")
    assert store.put(series("a", 2, 100, value=2), now=0)
    assert not store.put(series("a", 1, 100, value=1), now=0)  # an older notification
    assert store.get(key).sample.value == 2  # type: ignore[union-attr]
    assert store.put(series("a", 3, 50, value=3), now=0)
    assert store.expire(now=49) == 0
    assert store.expire(now=50) == 1
    assert store.get(key) is None
    assert seen == [(key, 2), (key, 3), (key, None)]


def test_a_full_reload_replaces_the_cache() -> None:
    store = SeriesStore()
    store.put(series("a", 1, 100), now=0)
    store.put(series("b", 1, 100), now=0)
    store.replace_all([series("b", 2, 100), series("c", 1, 100), series("d", 1, 5)], now=10)
    assert sorted(k[0] for k, _ in store.items()) == ["b", "c"]


def test_overview_verdict() -> None:
    none = {"low": 0, "medium": 0, "high": 0, "critical": 0}
    assert verdict([], none, "unknown") == "healthy"
    assert verdict(["healthy", "warning"], none, "healthy") == "warning"
    assert verdict(["healthy"], {**none, "low": 3, "medium": 2}, "healthy") == "healthy"
    assert verdict(["healthy"], {**none, "high": 1}, "healthy") == "warning"
    assert verdict(["warning"], {**none, "critical": 1}, "healthy") == "critical"
    assert verdict(["healthy"], none, "warning") == "warning"
    assert verdict(["warning"], none, "critical") == "critical"
