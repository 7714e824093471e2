"""The health sample writer keeps memory bounded while the database has never been reached."""

from __future__ import annotations

from datetime import UTC, datetime

from exporter.config import Config
from exporter.domain.health_rules import RuleBook, configured_rules
from exporter.domain.health_series import Sample, SeriesStore
from exporter.exposition.self_metrics import SelfMetrics
from exporter.storage import Database
from exporter.storage.health import MAX_QUEUED_JOBS, SampleWriter


def test_probe_samples_beyond_the_bound_are_dropped_and_counted() -> None:
    config = Config()
    rules = RuleBook(configured_rules(config))
    store = SeriesStore(rules, ttl=600, cap=10_000)
    metrics = SelfMetrics()
    # a database that was never connected: run() would wait for it
    writer = SampleWriter(Database("postgresql://x@127.0.0.1:1/x", config.database), store, metrics)
    now = datetime.now(UTC)
    for i in range(MAX_QUEUED_JOBS + 5):
        writer.record([Sample("api", "up", float(i % 2), "", "probe", now)])
    rejected = metrics.registry.get_sample_value(
        "monitoring_writes_rejected_total",
        {"table": "system_health_metrics", "reason": "queue_full"},
    )
    assert rejected == 5
    # the exported state still follows the probes
    series = store.get(("api", "up"))
    assert series is not None
    assert series.sample.value == float((MAX_QUEUED_JOBS + 4) % 2)
