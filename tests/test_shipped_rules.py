"""The shipped Prometheus rules: promtool accepts and unit-tests them, and they keep the contract."""

from __future__ import annotations

import pathlib
import re
import subprocess
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from tests.support import peers

REPO = pathlib.Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
RULE_FILES = sorted(RULES.glob("*.yml"))
RULE_TEST_FILES = sorted((RULES / "tests").glob("*.yml"))

# Metric families of the contract (SPEC.md, "Metrics").
CONTRACT_FAMILIES = {
    "monitoring_health_metric_value",
    "monitoring_health_status",
    "monitoring_health_threshold",
    "monitoring_service_up",
    "monitoring_data_quality_score",
    "monitoring_data_quality_status",
    "monitoring_alerts",
    "monitoring_overall_status",
    "monitoring_collector_success",
    "monitoring_collector_duration_seconds",
}
CONTRACT_HISTOGRAMS = {"monitoring_operation_duration_seconds"}
# The webhook's severity mapping (SPEC.md, "Alertmanager webhook") and alert types.
SEVERITIES = {"info", "warning", "error", "critical", "page"}
ALERT_TYPES = {"performance", "data_quality", "system_error", "security"}
REQUIRED_ALERTS = {
    "Watchdog",
    "MonitoringExporterDown",
    "MonitoringCollectorFailing",
    "MonitoredServiceDown",
    "ServiceHealthWarning",
    "ServiceHealthCritical",
    "DataQualityWarning",
    "DataQualityCritical",
    "SlowOperations",
    "HighOperationErrorRate",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier not preceded by a name character, "$" (a Grafana variable) or "." and not
# followed by "(" (a function or aggregation).
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (labels, strings and keywords removed)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set(_IDENT.findall(text))
    return {n for n in names if n.lower() not in _KEYWORDS}


def load_yaml(path: pathlib.Path) -> Any:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def all_rules() -> list[dict[str, Any]]:
    """Every rule of every shipped rule file."""
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            rules.extend(group["rules"])
    return rules


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule."""
    return [r for r in all_rules() if "alert" in r]


def recorded_names() -> set[str]:
    """The names of every recording rule."""
    return {r["record"] for r in all_rules() if "record" in r}


def allowed_metric(name: str, recorded: set[str]) -> bool:
    """Whether a rule or dashboard may use this metric name."""
    if name in CONTRACT_FAMILIES or name in recorded or name == "up":
        return True
    if any(name == f"{h}{s}" for h in CONTRACT_HISTOGRAMS for s in ("_bucket", "_sum", "_count")):
        return True
    # "process metrics" of the exporter's own health: the standard process collector
    return name.startswith("process_")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository root, capturing its output."""
    return peers.run("promtool", *args, cwd=REPO)


def test_promtool_is_available() -> None:
    result = run("--version")
    assert result.returncode == 0 and "promtool" in result.stdout + result.stderr


def test_rule_files_exist() -> None:
    assert [p.name for p in RULE_FILES] == ["alerts.yml", "recording.yml"]
    assert RULE_TEST_FILES, "rules/tests/*.yml: promtool unit tests are missing"


def test_promtool_check_rules() -> None:
    result = run("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = run("test", "rules", *map(str, RULE_TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TEST_FILES), result.stdout


def test_group_names_are_unique() -> None:
    # promtool's group_eval_order names groups without their file
    names = [g["name"] for path in RULE_FILES for g in load_yaml(path)["groups"]]
    assert len(names) == len(set(names)), names


def test_required_alerts_exist() -> None:
    names = [r["alert"] for r in alert_rules()]
    assert set(names) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(names)
    assert len(names) == len(set(names)), "alert names must be unique"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: str(r["alert"]))
def test_alert_has_contract_labels_and_annotations(rule: dict[str, Any]) -> None:
    labels = rule.get("labels", {})
    annotations = rule.get("annotations", {})
    assert labels.get("severity") in SEVERITIES
    assert labels.get("alert_type") in ALERT_TYPES
    assert str(labels.get("service", "")).strip(), "service label is required"
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"annotation {key} is required"
    assert str(annotations["runbook_url"]).startswith("https://")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_runbook_urls_point_at_runbook_sections() -> None:
    runbook = (RULES / "RUNBOOK.md").read_text(encoding="utf-8")
    anchors = {_anchor(m) for m in re.findall(r"^#+\s+(.+)$", runbook, flags=re.MULTILINE)}
    for rule in alert_rules():
        url = str(rule["annotations"]["runbook_url"])
        path, _, anchor = url.partition("#")
        assert path.endswith("/rules/RUNBOOK.md"), url
        assert anchor == rule["alert"].lower() and anchor in anchors, url


def test_watchdog_always_fires() -> None:
    (watchdog,) = [r for r in alert_rules() if r["alert"] == "Watchdog"]
    assert watchdog["expr"].strip() == "vector(1)"
    assert "for" not in watchdog


def test_alerts_wait_before_firing() -> None:
    for rule in alert_rules():
        if rule["alert"] != "Watchdog":
            assert "for" in rule, f"{rule['alert']} fires on a single evaluation"


def test_exporter_down_watches_the_exporter_job() -> None:
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    assert 'up{job="monitoring-exporter"}' in exprs["MonitoringExporterDown"]


def test_health_alerts_take_thresholds_from_the_exported_rule() -> None:
    for rule in alert_rules():
        if rule["alert"].startswith("ServiceHealth"):
            assert "monitoring_health_status" in rule["expr"]
            # no literal threshold compared against the value
            assert not re.search(r"monitoring_health_metric_value\s*[<>]", rule["expr"])
            assert "monitoring_health_threshold" in rule["annotations"]["description"]
    ratios = [r for r in all_rules() if "threshold_ratio" in r.get("record", "")]
    assert ratios and all("monitoring_health_threshold" in r["expr"] for r in ratios)


def test_latency_quantiles_are_recorded_per_operation_type() -> None:
    rules = {r["record"]: r["expr"] for r in all_rules() if "record" in r}
    for q in ("p50", "p95", "p99"):
        name = f"operation_type:monitoring_operation_duration_seconds:{q}_5m"
        assert name in rules, name
        assert "histogram_quantile" in rules[name]
    slow = [r for r in alert_rules() if r["alert"] == "SlowOperations"]
    assert "p95" in slow[0]["expr"]


def test_rules_use_only_contract_metrics() -> None:
    recorded = recorded_names()
    for rule in all_rules():
        for name in metric_names(str(rule["expr"])):
            assert allowed_metric(name, recorded), f"{rule.get('alert') or rule['record']}: {name}"


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (le) (rate(a_bucket{x="y", z=~"$v"}[$__rate_interval])) / ignoring (level) '
        "b_total offset 5m and on () group_left () c:d:e > 1e3 or vector(0)"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:d:e"}


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TEST_FILES:
        for group in load_yaml(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fires == set(), "never tested firing"
    # the Watchdog has no state in which it does not fire
    assert names - {"Watchdog"} - quiet == set(), "never tested not firing"
