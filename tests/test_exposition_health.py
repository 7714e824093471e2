"""The pre-rendered health families: same meaning as prometheus_client's output, valid text."""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from exporter.domain.health import STATUS_CODE, Rule
from exporter.domain.health_rules import Override, RuleBook
from exporter.domain.health_series import Sample, SeriesStore
from exporter.exposition.health import HealthExposition, go_float
from exporter.exposition.registry import Exposition
from tests.support import peers
from tests.support.health import put_samples

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NASTY = ['quote"d', "back\\slash", "new\nline", "ünïcödé ✓", 'all\\"\n']


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def build(
    services: Iterable[str], cap: int = 10_000
) -> tuple[Exposition, HealthExposition, SeriesStore, Clock]:
    rules = RuleBook({("svc0", "latency"): Rule(warning=0.5, critical=1.0)})
    store = SeriesStore()
    clock = Clock()
    health = HealthExposition(store, rules, clock=clock)
    exposition = Exposition()
    exposition.add_prerendered("health", health)
    samples = [
        Sample(name, "latency", 0.25 * i, "s", "push", NOW, pushed_rule=Rule(critical=2.0))
        for i, name in enumerate(services)
    ]
    put_samples(store, rules, samples, now=0, ttl=60)
    put_samples(store, rules, [Sample('probe"d', "up", 1.0, "", "probe", NOW)], now=0, ttl=600)
    return exposition, health, store, clock


def samples_of(families: Iterable[Metric]) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in families
        if family.name.startswith(("monitoring_health", "monitoring_service_up"))
        for s in family.samples
    }


class Reference:
    """The same series as prometheus_client would expose them."""

    def __init__(self, store: SeriesStore, rules: RuleBook) -> None:
        self.store, self.rules = store, rules

    def collect(self) -> Iterable[Metric]:
        value = GaugeMetricFamily(
            "monitoring_health_metric_value", "v", labels=["service", "metric_type"]
        )
        status = GaugeMetricFamily(
            "monitoring_health_status", "s", labels=["service", "metric_type"]
        )
        threshold = GaugeMetricFamily(
            "monitoring_health_threshold", "t", labels=["service", "metric_type", "level"]
        )
        up = GaugeMetricFamily("monitoring_service_up", "u", labels=["service"])
        for (service, metric_type, _), series in self.store.items():
            value.add_metric([service, metric_type], series.sample.value)
            status.add_metric([service, metric_type], STATUS_CODE[series.status])
            rule, _ = self.rules.rule_for((service, metric_type), series.sample.pushed_rule)
            for level in ("warning", "critical"):
                if getattr(rule, level) is not None:
                    threshold.add_metric([service, metric_type, level], getattr(rule, level))
            if metric_type == "up":
                up.add_metric([service], series.sample.value)
        yield from (value, status, threshold, up)


def test_same_meaning_as_prometheus_client_with_nasty_labels() -> None:
    exposition, health, store, _ = build(["svc0", *NASTY])
    body, headers = exposition.render(None, None)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    registry = CollectorRegistry()
    registry.register(Reference(store, health.rules))
    ours = samples_of(text_string_to_metric_families(body.decode()))
    theirs = samples_of(text_string_to_metric_families(generate_latest(registry).decode()))
    assert ours == theirs
    assert (
        "monitoring_health_metric_value",
        (("metric_type", "latency"), ("service", "new\nline")),
        0.75,
    ) in ours


def test_label_values_are_escaped() -> None:
    exposition, *_ = build(NASTY)
    text = exposition.render(None, None)[0].decode()
    assert 'service="quote\\"d"' in text
    assert 'service="back\\\\slash"' in text
    assert 'service="new\\nline"' in text
    assert 'service="ünïcödé ✓"' in text
    # no raw newline inside a label value: every line is a comment or a whole sample
    assert all(line.startswith(("#", "monitoring_", "process_")) for line in text.splitlines())


def test_output_passes_promtool(tmp_path: pytest.TempPathFactory) -> None:
    exposition, *_ = build(["svc0", *NASTY])
    body, _ = exposition.render(None, None)
    result = peers.run("promtool", "check", "metrics", input=body.decode(), timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_openmetrics_when_asked() -> None:
    exposition, *_ = build(["svc0", *NASTY])
    body, headers = exposition.render("application/openmetrics-text; version=1.0.0", None)
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    names = {f.name for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
    assert {"monitoring_health_metric_value", "monitoring_service_up"} <= names
    assert "monitoring_collector_success" in names


def test_gzip_when_accepted() -> None:
    exposition, *_ = build(["svc0"])
    body, headers = exposition.render(None, "gzip, deflate")
    assert headers["Content-Encoding"] == "gzip"
    assert b"monitoring_health_status" in gzip.decompress(body)


def test_threshold_changes_are_exported_without_new_samples() -> None:
    exposition, health, _, _ = build(["svc0"])
    health.rules.set_override(("svc0", "latency"), Override(Rule(critical=7.0), 1, NOW))
    text = exposition.render(None, None)[0].decode()
    assert (
        'monitoring_health_threshold{service="svc0",metric_type="latency",level="critical"} 7.0'
        in text
    )
    assert 'level="warning"' not in text.split("svc0")[-1].split("\n")[0]


def test_a_removed_override_leaves_the_output_when_nothing_else_rules_the_key() -> None:
    exposition, health, _, _ = build(["svc0"])
    key = ("nowhere", "queue_depth")  # no configured rule, no samples
    line = 'monitoring_health_threshold{service="nowhere",metric_type="queue_depth"'
    health.rules.set_override(key, Override(Rule(critical=7.0), 1, NOW))
    assert line in exposition.render(None, None)[0].decode()
    health.rules.set_override(key, Override(None, 2, NOW))
    assert line not in exposition.render(None, None)[0].decode()


def test_expired_series_leave_the_output() -> None:
    exposition, _, _, clock = build(["svc0", "gone"])
    clock.now = 61
    text = exposition.render(None, None)[0].decode()
    assert 'service="gone"' not in text
    # probe series stay; configured rules stay exported
    assert 'monitoring_service_up{service="probe\\"d"} 1.0' in text
    assert 'service="svc0",metric_type="latency",level="critical"' in text


def test_a_failing_source_does_not_fail_the_scrape() -> None:
    class Broken:
        def render_families(self, openmetrics: bool) -> Iterable[str]:
            raise RuntimeError("boom")

    exposition, *_ = build(["svc0"])
    exposition.add_prerendered("broken", Broken())
    text = exposition.render(None, None)[0].decode()
    assert 'monitoring_collector_success{collector="broken"} 0.0' in text
    assert 'monitoring_collector_success{collector="health"} 1.0' in text
    assert "monitoring_health_metric_value" in text


@pytest.mark.parametrize(
    "value", [0.0, 1.0, -2.5, 0.1, 1e-7, 123456.0, 1234567.0, 1e21, 2.5e300, math.inf, -math.inf]
)
def test_values_are_formatted_as_prometheus_client_does(value: float) -> None:
    assert go_float(value) == floatToGoString(value)  # type: ignore[no-untyped-call]
