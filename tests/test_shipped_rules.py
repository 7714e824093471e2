"""The shipped Prometheus rules: promtool accepts and unit-tests them, and they keep the contract."""

from __future__ import annotations

import asyncio
import pathlib
import re
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import eventually
from tests.support import peers

REPO = pathlib.Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
RULE_FILES = sorted(RULES.glob("*.yml"))
RULE_TEST_FILES = sorted((RULES / "tests").glob("*.yml"))
SERVICE_MONITOR = REPO / "deploy" / "kubernetes" / "servicemonitor.yaml"

# Domain families: derived from PostgreSQL, the same on every replica (SPEC.md, "Replicas"),
# so Prometheus holds one copy per scraped replica, told apart by the target labels below.
DOMAIN_FAMILIES = {
    "monitoring_health_metric_value",
    "monitoring_health_status",
    "monitoring_health_threshold",
    "monitoring_service_up",
    "monitoring_data_quality_score",
    "monitoring_data_quality_status",
    "monitoring_alerts",
    "monitoring_overall_status",
    "monitoring_heartbeat_last_seen_timestamp_seconds",
    "monitoring_quality_check_success",
    "monitoring_quality_check_duration_seconds",
    "monitoring_quality_check_last_run_timestamp_seconds",
}
CONTRACT_HISTOGRAMS = {"monitoring_operation_duration_seconds"}
# Metric families of the contract (SPEC.md, "Metrics"): the domain, and each replica's own.
CONTRACT_FAMILIES = DOMAIN_FAMILIES | {
    "monitoring_leader",
    "monitoring_background_task_failures_total",
    "monitoring_collector_success",
    "monitoring_collector_duration_seconds",
}
# Target labels that differ between the copies of one series scraped from several replicas
# (instance everywhere, pod on Kubernetes).
REPLICA_TARGET_LABELS = ("instance", "pod")
# Aggregations that may merge identical copies: summing or counting them would multiply.
COLLAPSING = {"max", "min", "avg", "group", "quantile"}
AGGREGATIONS = COLLAPSING | {
    "sum",
    "count",
    "count_values",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "limitk",
    "limit_ratio",
}
# The webhook's severity mapping (SPEC.md, "Alertmanager webhook") and alert types.
SEVERITIES = {"info", "warning", "error", "critical", "page"}
ALERT_TYPES = {"performance", "data_quality", "system_error", "security"}
REQUIRED_ALERTS = {
    "Watchdog",
    "MonitoringExporterDown",
    "MonitoringCollectorFailing",
    "MonitoringExporterNoLeader",
    "MonitoringExporterSeveralLeaders",
    "MonitoringBackgroundTaskFailing",
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


_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)|([a-zA-Z_:][\w:]*)|(\S))")
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def _tokens(expr: str) -> list[str]:
    """Numbers, names and single characters of a PromQL expression, without strings,
    label matchers and ranges (which hold no metric names)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    return [next(g for g in m.groups() if g) for m in _TOKEN.finditer(text) if m.group().strip()]


@dataclass(frozen=True)
class Aggregation:
    """One aggregation operator with its grouping (mode None: over everything)."""

    op: str
    mode: str | None
    labels: frozenset[str]

    def keeps(self, label: str) -> bool:
        """Whether the label survives this aggregation."""
        if self.op in {"topk", "bottomk", "limitk", "limit_ratio"}:
            return True  # these select series, with all their labels
        if self.mode == "by":
            return label in self.labels
        return self.mode == "without" and label not in self.labels


def selections(expr: str) -> list[tuple[str, list[Aggregation]]]:
    """Every metric an expression selects, with the aggregations around it, innermost first.

    A loose reading of PromQL (no full parser): enough for the shipped rules and dashboards,
    with prefix ("max by (a) (x)") and postfix ("max(x) by (a)") grouping.
    """
    tokens = _tokens(expr)
    closing: dict[int, int] = {}
    opening: dict[int, int] = {}
    stack: list[int] = []
    for i, token in enumerate(tokens):
        if token == "(":
            stack.append(i)
        elif token == ")":
            start = stack.pop()
            closing[start], opening[i] = i, start

    def names(start: int) -> frozenset[str]:
        return frozenset(t for t in tokens[start + 1 : closing[start]] if t != ",")

    label_lists = {i for i in closing if i > 0 and tokens[i - 1] in _LABEL_LISTS}
    spans: list[tuple[int, int, Aggregation]] = []
    for start, end in closing.items():
        if start in label_lists or start == 0:
            continue
        before = tokens[start - 1]
        op, mode, labels = "", None, frozenset[str]()
        if before in AGGREGATIONS:
            op = before
        elif before == ")" and opening[start - 1] in label_lists:
            list_start = opening[start - 1]
            if list_start >= 2 and tokens[list_start - 2] in AGGREGATIONS:
                op, mode = tokens[list_start - 2], tokens[list_start - 1]
                labels = names(list_start)
        if not op:
            continue
        after = end + 1
        if mode is None and tokens[after : after + 2] in (["by", "("], ["without", "("]):
            mode, labels = tokens[after], names(after + 1)
        spans.append((start, end, Aggregation(op, mode, labels)))
    inside_lists = {k for i in label_lists for k in range(i, closing[i] + 1)}
    found = []
    for k, token in enumerate(tokens):
        if k in inside_lists or not re.fullmatch(r"[a-zA-Z_:][\w:]*", token):
            continue
        if token.lower() in _KEYWORDS or token in AGGREGATIONS or tokens[k + 1 : k + 2] == ["("]:
            continue
        around = sorted((s for s in spans if s[0] < k < s[1]), key=lambda s: s[0], reverse=True)
        found.append((token, [agg for _, _, agg in around]))
    return found


def is_domain(name: str) -> bool:
    """Whether a metric name is a domain family (or a domain histogram's series)."""
    if name in DOMAIN_FAMILIES:
        return True
    return any(
        name == f"{h}{s}" for h in CONTRACT_HISTOGRAMS for s in ("_bucket", "_sum", "_count")
    )


def replica_copies_kept(expr: str) -> list[str]:
    """Domain selections whose per-replica copies the expression does not merge properly.

    The first aggregation (from the inside out) that drops instance or pod must drop both
    and be one that merges identical copies (max, min, avg, ...), not sum or count.
    """
    problems = []
    for name, aggregations in selections(expr):
        if not is_domain(name):
            continue
        merging = next(
            (a for a in aggregations if not all(a.keeps(x) for x in REPLICA_TARGET_LABELS)), None
        )
        if merging is None:
            problems.append(f"{name}: no aggregation drops {'/'.join(REPLICA_TARGET_LABELS)}")
        elif merging.op not in COLLAPSING:
            problems.append(f"{name}: {merging.op} adds up the copies of each replica")
        else:
            kept = [x for x in REPLICA_TARGET_LABELS if merging.keeps(x)]
            if kept:
                problems.append(f"{name}: {merging.op} keeps {', '.join(kept)}")
    return problems


def replica_label_dropped(expr: str, families: set[str]) -> list[str]:
    """Selections of these (per-replica) families whose "replica" label an aggregation drops."""
    return [
        f"{name}: {agg.op} drops replica"
        for name, aggregations in selections(expr)
        if name in families
        for agg in aggregations
        if not agg.keeps("replica")
    ]


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
    if name in CONTRACT_FAMILIES or name in recorded or name == "up" or is_domain(name):
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


@pytest.mark.parametrize("path", RULE_TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: pathlib.Path) -> None:
    # replicas_test.yml among them: series from three replicas, one alert per condition
    result = run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 1, result.stdout


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


def test_selections_read_aggregations_loosely() -> None:
    expr = (
        'sum by (le) (max without (instance, pod) (rate(a_bucket{x="y"}[5m])))'
        " / ignoring (level) group_left () b and on () max(c) by (service) > 1"
    )
    found = dict(selections(expr))
    assert found["a_bucket"] == [
        Aggregation("max", "without", frozenset({"instance", "pod"})),
        Aggregation("sum", "by", frozenset({"le"})),
    ]
    assert found["b"] == []
    assert found["c"] == [Aggregation("max", "by", frozenset({"service"}))]
    assert set(found) == {"a_bucket", "b", "c"}


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("monitoring_service_up == 0", "no aggregation drops"),
        ("max without (instance) (monitoring_service_up)", "max keeps pod"),
        ("max by (service, pod) (monitoring_service_up)", "max keeps pod"),
        ("topk(1, monitoring_alerts)", "no aggregation drops"),
        ("sum by (le) (rate(monitoring_operation_duration_seconds_bucket[5m]))", "adds up"),
        ("count by (service) (monitoring_health_status == 2)", "adds up"),
        ("max without (instance, pod) (x) and monitoring_health_status", "no aggregation"),
    ],
)
def test_unmerged_replica_copies_are_found(expr: str, problem: str) -> None:
    problems = replica_copies_kept(expr)
    assert len(problems) == 1 and problem in problems[0], problems


@pytest.mark.parametrize(
    "expr",
    [
        "max without (instance, pod) (monitoring_service_up) == 0",
        "max(monitoring_overall_status)",
        "max(monitoring_alerts) by (status)",
        "max by (status) (sum without (severity) (monitoring_alerts))",
        "count(max by (service) (monitoring_service_up) == 1) or vector(0)",
        "sum by (le) (max without (instance, pod, replica) (rate(monitoring_operation_duration_seconds_bucket[5m])))",
        "avg_over_time(monitoring_collector_success[10m]) < 0.5",  # a replica's own series
    ],
)
def test_merged_replica_copies_pass(expr: str) -> None:
    assert replica_copies_kept(expr) == []


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: str(r.get("alert") or r["record"]))
def test_rules_merge_the_copies_of_each_replica(rule: dict[str, Any]) -> None:
    # otherwise every replica adds an alert (or a sum counts each figure once per replica)
    assert replica_copies_kept(str(rule["expr"])) == []


def test_health_alerts_keep_the_replica_of_host_figures() -> None:
    per_replica = {"monitoring_health_metric_value", "monitoring_health_status"}
    checked = [
        r
        for r in all_rules()
        if "alert" in r or "threshold_ratio" in r["record"]
        if per_replica & metric_names(str(r["expr"]))
    ]
    assert len(checked) >= 4
    for rule in checked:
        assert replica_label_dropped(str(rule["expr"]), per_replica) == [], rule["expr"]


def _replica_cases() -> list[dict[str, Any]]:
    return list(load_yaml(RULES / "tests" / "replicas_test.yml")["tests"])


def _instances(case: dict[str, Any]) -> set[str]:
    found = set()
    for item in case["input_series"]:
        found.update(re.findall(r'\binstance="([^"]*)"', item["series"]))
    return found


def test_every_replicated_condition_fires_once_from_three_replicas() -> None:
    """Alerts over domain series, and those about leadership and background tasks, are each
    expected firing as exactly one alert, naming no pod, in a case fed by three replicas."""
    recorded = recorded_names()
    watched = {
        r["alert"]
        for r in alert_rules()
        if any(is_domain(n) or n in recorded for n in metric_names(str(r["expr"])))
    }
    watched |= {
        "Watchdog",
        "MonitoringExporterNoLeader",
        "MonitoringExporterSeveralLeaders",
        "MonitoringBackgroundTaskFailing",
    }
    once: set[str] = set()
    for case in _replica_cases():
        if len(_instances(case)) < 3:
            continue
        for check in case.get("alert_rule_test", []):
            alerts = check.get("exp_alerts") or []
            if check["alertname"] in watched:
                for alert in alerts:
                    assert not set(alert["exp_labels"]) & {"instance", "pod"}, check
            if len(alerts) == 1:
                once.add(check["alertname"])
    assert watched - once == set(), "not shown firing once from three replicas"
    assert len(watched) >= 11


def test_replica_cases_cover_disagreement_and_a_replica_down() -> None:
    names = " | ".join(c["name"] for c in _replica_cases())
    assert "disagree" in names and "replica goes down" in names
    stale = [c for c in _replica_cases() if any("stale" in s["values"] for s in c["input_series"])]
    assert stale, "no case in which a replica's series end"


# What three replicas export: the same domain series from PostgreSQL, every replica's host
# figures (stored with the replica that measured them), and each one's own leadership.
_REPLICA_METRICS = """\
monitoring_service_up{{service="dashboard_api"}} 0
monitoring_health_metric_value{{service="data_sync",metric_type="uptime"}} 0.9
monitoring_health_status{{service="data_sync",metric_type="uptime"}} 2
monitoring_health_threshold{{service="data_sync",metric_type="uptime",level="critical"}} 0.95
monitoring_health_metric_value{{service="host",metric_type="cpu_usage",replica="exporter-a"}} 0.85
monitoring_health_status{{service="host",metric_type="cpu_usage",replica="exporter-a"}} 1
monitoring_health_metric_value{{service="host",metric_type="cpu_usage",replica="exporter-b"}} 0.3
monitoring_health_status{{service="host",metric_type="cpu_usage",replica="exporter-b"}} 0
monitoring_health_metric_value{{service="host",metric_type="cpu_usage",replica="exporter-c"}} 0.9
monitoring_health_status{{service="host",metric_type="cpu_usage",replica="exporter-c"}} 1
monitoring_leader {leader}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _prometheus_relabeling(rule: dict[str, Any]) -> dict[str, Any]:
    """A ServiceMonitor relabeling in Prometheus's own spelling."""
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {keys.get(k, k): (v.lower() if k == "action" else v) for k, v in rule.items()}


@pytest.fixture
async def three_replicas() -> AsyncIterator[list[int]]:
    """Three /metrics endpoints exporting what three replicas would, a leading."""
    servers = []
    for leader in (1, 0, 0):
        text = _REPLICA_METRICS.format(leader=leader)

        async def metrics(request: web.Request, text: str = text) -> web.Response:
            return web.Response(text=text, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
    yield [int(s.port or 0) for s in servers]
    for server in servers:
        await server.close()


async def test_prometheus_with_the_servicemonitor_labels_alerts_once(
    three_replicas: list[int], tmp_path: pathlib.Path
) -> None:
    """A real Prometheus scrapes three replicas with the target labels the Prometheus
    Operator gives them (service among them), relabelled as the shipped ServiceMonitor says,
    and evaluates the shipped rules: the domain label service survives, and each condition
    is one alert (pending, as every shipped alert waits before it fires)."""
    (endpoint,) = load_yaml(SERVICE_MONITOR)["spec"]["endpoints"]
    targets = [
        {
            "targets": [f"127.0.0.1:{port}"],
            "labels": {
                "namespace": "monitoring",
                "service": "monitoring-exporter",  # the Kubernetes Service's name
                "pod": f"monitoring-exporter-{name}",
                "container": "exporter",
                "endpoint": endpoint["port"],
            },
        }
        for name, port in zip("abc", three_replicas, strict=True)
    ]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [
            {
                "job_name": "monitoring-exporter",
                "metrics_path": endpoint["path"],
                "honor_labels": endpoint.get("honorLabels", False),
                "static_configs": targets,
                "relabel_configs": [
                    _prometheus_relabeling(r) for r in endpoint.get("relabelings", [])
                ],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    prometheus = peers.peer("prometheus")
    proc = await asyncio.create_subprocess_exec(
        prometheus.path,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=prometheus.env,
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def query(expr: str) -> list[dict[str, Any]]:
                url = f"http://127.0.0.1:{port}/api/v1/query"
                try:
                    async with session.get(url, params={"query": expr}) as resp:
                        if resp.status != 200:
                            return []
                        result: list[dict[str, Any]] = (await resp.json())["data"]["result"]
                        return result
                except aiohttp.ClientError:
                    return []

            def alerts(found: list[dict[str, Any]]) -> list[dict[str, str]]:
                return sorted((r["metric"] for r in found), key=lambda m: sorted(m.items()))

            async def evaluated() -> bool:
                up = await query("monitoring_service_up")
                host = await query('ALERTS{alertname="ServiceHealthWarning"}')
                return len(up) == 3 and len(host) == 2

            await eventually(evaluated, timeout=60, interval=0.5)
            # three copies, each with the monitored service's name; the Service's is dropped
            copies = await query("monitoring_service_up")
            assert {r["metric"]["pod"] for r in copies} == {
                "monitoring-exporter-a",
                "monitoring-exporter-b",
                "monitoring-exporter-c",
            }
            assert {r["metric"]["service"] for r in copies} == {"dashboard_api"}
            assert await query("{exported_service!=''}") == []
            assert await query('monitoring_leader{service!=""}') == []

            common = {
                "alertstate": "pending",
                "job": "monitoring-exporter",
                "namespace": "monitoring",
                "container": "exporter",
                "endpoint": "http-metrics",
            }
            down = alerts(await query('ALERTS{alertname="MonitoredServiceDown"}'))
            assert down == [
                {
                    **common,
                    "__name__": "ALERTS",
                    "alertname": "MonitoredServiceDown",
                    "severity": "critical",
                    "alert_type": "system_error",
                    "service": "dashboard_api",
                }
            ]
            critical = alerts(await query('ALERTS{alertname="ServiceHealthCritical"}'))
            assert [(a["service"], a["metric_type"]) for a in critical] == [("data_sync", "uptime")]
            host = alerts(await query('ALERTS{alertname="ServiceHealthWarning"}'))
            assert [(a["service"], a.get("replica")) for a in host] == [
                ("host", "exporter-a"),
                ("host", "exporter-c"),
            ]
            assert not any({"instance", "pod"} & set(a) for a in down + critical + host)

            # one leader among the three: no leader alert once every target was scraped (an
            # evaluation between the first scrapes of the three may see none yet, briefly)
            async def no_leader_alert() -> bool:
                return await query('ALERTS{alertname=~"MonitoringExporter.*Leader.*"}') == []

            await eventually(no_leader_alert, timeout=10, interval=0.5)
    finally:
        proc.terminate()
        await proc.wait()
