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
from exporter.domain.health_series import Sample, SeriesLimit, SeriesStore
from exporter.domain.health_uptime import UptimeWindow

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


def test_store_applies_only_what_it_is_given() -> None:
    store = SeriesStore(RuleBook(), ttl=60, cap=10)
    evaluated = store.evaluate([sample("a")], now=0)
    assert store.get(("a", "latency")) is None
    store.apply(evaluated)
    assert store.get(("a", "latency")) is not None


def test_store_cap_rejects_a_push_creating_too_many_series() -> None:
    store = SeriesStore(RuleBook(), ttl=60, cap=2)
    store.apply(store.evaluate([sample("a"), sample("b")], now=0))
    # updating existing series is always fine
    store.apply(store.evaluate([sample("a", 2)], now=1))
    with pytest.raises(SeriesLimit):
        store.evaluate([sample("a", 3), sample("c")], now=1)
    assert store.get(("a", "latency")).sample.value == 2  # type: ignore[union-attr]
    assert len(store) == 2


def test_pushed_series_expire_after_the_ttl_and_free_the_cap() -> None:
    store = SeriesStore(RuleBook(), ttl=60, cap=2)
    store.apply(store.evaluate([sample("a"), sample("b")], now=0))
    store.apply(store.evaluate([sample("b")], now=50))
    assert store.expire(now=61) == 1
    assert store.get(("a", "latency")) is None
    assert store.get(("b", "latency")) is not None
    store.apply(store.evaluate([sample("c")], now=62))
    assert len(store) == 2


def test_probe_series_do_not_expire() -> None:
    store = SeriesStore(RuleBook(), ttl=60, cap=5)
    store.apply(store.evaluate([sample("p", source="probe")], now=0))
    assert store.expire(now=1000) == 0


def test_hysteresis_carries_within_one_batch() -> None:
    book = RuleBook({("a", "latency"): Rule(critical=1, for_=2)})
    store = SeriesStore(book, ttl=60, cap=5)
    store.apply(store.evaluate([sample("a", 0)], now=0))
    out = store.evaluate([sample("a", 5), sample("a", 5)], now=1)
    assert [e.status for e in out] == ["healthy", "critical"]


def test_uptime_window() -> None:
    window = UptimeWindow(10)
    assert window.add(0, True) == 1.0
    assert window.add(1, False) == 0.5
    assert window.add(2, True) == pytest.approx(2 / 3)
    assert window.add(11.5, True) == 1.0  # the t=0 and t=1 outcomes left the window
    assert window.add(12, False) == 0.5


def test_overview_verdict() -> None:
    none = {"low": 0, "medium": 0, "high": 0, "critical": 0}
    assert verdict([], none, "unknown") == "healthy"
    assert verdict(["healthy", "warning"], none, "healthy") == "warning"
    assert verdict(["healthy"], {**none, "low": 3, "medium": 2}, "healthy") == "healthy"
    assert verdict(["healthy"], {**none, "high": 1}, "healthy") == "warning"
    assert verdict(["warning"], {**none, "critical": 1}, "healthy") == "critical"
    assert verdict(["healthy"], none, "warning") == "warning"
    assert verdict(["warning"], none, "critical") == "critical"
