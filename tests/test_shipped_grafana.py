"""The shipped Grafana provisioning and dashboards: valid, consistent, and on contract metrics."""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from tests.test_shipped_rules import (
    allowed_metric,
    metric_names,
    recorded_names,
    replica_copies_kept,
    replica_label_dropped,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
GRAFANA = REPO / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
POSTGRES_TYPES = {"postgres", "grafana-postgresql-datasource"}
EXPECTED_DASHBOARDS = {
    "monitoring-overview",
    "monitoring-service-health",
    "monitoring-data-quality",
    "monitoring-alerts",
    "monitoring-performance",
}
# Tables of the contract (SPEC.md, "Database") that dashboards may read.
TABLES = {
    "system_health_metrics",
    "data_quality_indicators",
    "system_alerts",
    "system_alert_events",
    "monitoring_dashboard_config",
    "system_performance_logs",
}
# What the performance dashboard reads instead of raw records: the rollups of migration 9,
# through their read functions (tests/test_grafana_rollups.py checks the plans).
ROLLUP_READS = {
    "performance_rollups",
    "performance_summary",
    "performance_sketch_quantiles",
}
# Columns of the two alert tables that the alerts dashboard reads.
ALERT_COLUMNS = {
    "id",
    "fingerprint",
    "alert_type",
    "severity",
    "status",
    "title",
    "description",
    "service_name",
    "labels",
    "annotations",
    "source",
    "starts_at",
    "ends_at",
    "acknowledged_by",
    "acknowledged_at",
    "resolved_by",
    "resolved_at",
    "created_at",
    "updated_at",
}
EVENT_COLUMNS = {"alert_id", "from_status", "to_status", "actor", "note", "at"}


def load_yaml(path: pathlib.Path) -> Any:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def datasources() -> list[dict[str, Any]]:
    """Every provisioned datasource."""
    found: list[dict[str, Any]] = []
    for path in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml")):
        found.extend(load_yaml(path)["datasources"])
    return found


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard, by file name."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARD_FILES}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def walk(obj: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object inside obj."""
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from walk(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from walk(value)


def targets(
    dashboard: dict[str, Any], kind: str
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) of every query whose datasource is of kind "prometheus" or "sql"."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            is_sql = ds.get("type") in POSTGRES_TYPES
            if (kind == "sql") == is_sql:
                yield panel, target


def variable_query(variable: dict[str, Any]) -> str:
    """The query text of a templating variable."""
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


def test_datasources_have_stable_uids() -> None:
    by_uid = {d["uid"]: d for d in datasources()}
    assert set(by_uid) == {"monitoring-prometheus", "monitoring-postgres"}
    assert by_uid["monitoring-prometheus"]["type"] == "prometheus"
    assert by_uid["monitoring-prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["monitoring-postgres"]["type"] in POSTGRES_TYPES


def test_postgres_datasource_uses_the_read_only_login() -> None:
    (pg,) = [d for d in datasources() if d["type"] in POSTGRES_TYPES]
    assert pg["jsonData"]["database"] == "monitoring"
    # the password is read from a secret, never written here
    assert "password" not in pg
    password = pg["secureJsonData"]["password"]
    assert re.fullmatch(r"\$__(file|env)\{[^}]+\}", password), password
    grants = (REPO / "deploy" / "compose" / "postgres" / "grant-grafana.sql").read_text()
    login = pg["user"]
    assert re.search(rf"GRANT\s+monitoring_reader\s+TO\s+{login}\s*;", grants)
    assert "monitoring_writer" not in grants
    assert "default_transaction_read_only = on" in grants


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")["providers"]
    assert provider["type"] == "file"
    compose = load_yaml(REPO / "docker-compose.yml")
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_the_five_dashboards_have_unique_uids_and_titles() -> None:
    boards = dashboards()
    uids = [d["uid"] for d in boards.values()]
    titles = [d["title"] for d in boards.values()]
    assert set(uids) == EXPECTED_DASHBOARDS
    assert len(uids) == len(set(uids)) and len(titles) == len(set(titles))


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: pathlib.Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    assert board.get("id") is None, "provisioned dashboards must not carry a database id"
    assert isinstance(board["schemaVersion"], int)
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel.get("targets"), f"{panel['title']}: no queries"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_uses_only_provisioned_datasources(path: pathlib.Path) -> None:
    provisioned = {d["uid"]: d["type"] for d in datasources()}
    board = json.loads(path.read_text(encoding="utf-8"))
    for obj in walk(board):
        ds = obj.get("datasource")
        if isinstance(ds, dict) and ds.get("uid") != "-- Grafana --":
            assert ds.get("uid") in provisioned, ds
            assert ds.get("type") == provisioned[ds["uid"]], ds
        else:
            assert ds is None or ds == {"type": "grafana", "uid": "-- Grafana --"}, ds


def test_dashboards_have_the_expected_variables() -> None:
    by_uid = {d["uid"]: d for d in dashboards().values()}
    expected = {
        "monitoring-overview": {"service"},
        "monitoring-service-health": {"service"},
        "monitoring-data-quality": {"source"},
        "monitoring-alerts": {"service"},
        "monitoring-performance": {"operation_type"},
    }
    for uid, names in expected.items():
        have = {v["name"] for v in by_uid[uid]["templating"]["list"]}
        assert names <= have, (uid, names - have)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_variables_used_are_defined(path: pathlib.Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    defined = {v["name"] for v in board["templating"]["list"]}
    text = path.read_text(encoding="utf-8")
    used = set(re.findall(r"\$(?!__)([a-zA-Z_]\w*)", text))
    # $value etc. do not appear; every reference must be a variable of this dashboard
    assert used <= defined, used - defined


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_metrics_are_contract_metrics(path: pathlib.Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    recorded = recorded_names()
    exprs = [str(t["expr"]) for _, t in targets(board, "prometheus")]
    for variable in board["templating"]["list"]:
        if variable.get("datasource", {}).get("type") == "prometheus":
            match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", variable_query(variable))
            assert match, variable_query(variable)
            exprs.append(match.group(1))
    assert exprs
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        for name in names:
            assert allowed_metric(name, recorded), f"{path.name}: {name} in {expr}"


def _sql(board: dict[str, Any]) -> list[str]:
    queries = [str(t["rawSql"]) for _, t in targets(board, "sql")]
    for variable in board["templating"]["list"]:
        if variable.get("datasource", {}).get("type") in POSTGRES_TYPES:
            queries.append(variable_query(variable))
    return queries


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_sql_reads_contract_tables(path: pathlib.Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    for query in _sql(board):
        assert re.match(r"\s*SELECT\b", query, flags=re.IGNORECASE), query
        tables = re.findall(r"\bmonitoring\.(\w+)", query)
        assert tables, f"tables must be schema-qualified: {query}"
        assert set(tables) <= TABLES | ROLLUP_READS, query


def test_alerts_dashboard_reads_alert_tables_with_their_columns() -> None:
    (board,) = [d for d in dashboards().values() if d["uid"] == "monitoring-alerts"]
    queries = _sql(board)
    assert any("monitoring.system_alerts" in q for q in queries)
    assert any("monitoring.system_alert_events" in q for q in queries)
    # qualified references in joins: a.<column> and e.<column>
    for query in queries:
        for alias, column in re.findall(r"\b([ae])\.(\w+)", query):
            assert column in (ALERT_COLUMNS if alias == "a" else EVENT_COLUMNS), column
    text = "\n".join(queries)
    for value in re.findall(r"'(\w+)'", text):
        if value in {"low", "medium", "high", "critical", "active", "acknowledged", "resolved"}:
            continue
        assert value in {"1h", "none"}, f"unexpected literal {value!r}"


def _unit(panel: dict[str, Any]) -> str | None:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    return None if unit is None else str(unit)


def test_units_fit_the_metrics() -> None:
    checked = 0
    for board in dashboards().values():
        for panel, target in targets(board, "prometheus"):
            if panel["type"] in {"table", "state-timeline", "heatmap"}:
                continue
            expr = str(target["expr"])
            if "data_quality_score" in expr:
                assert _unit(panel) == "percent", panel["title"]
                checked += 1
            elif re.search(r"duration_seconds:(p\d\d|mean)_5m", expr):
                assert _unit(panel) == "s", panel["title"]
                checked += 1
            elif re.search(r"[:_]ratio", expr):
                assert _unit(panel) == "percentunit", panel["title"]
                checked += 1
    assert checked >= 5


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboards_merge_the_copies_of_each_replica(path: pathlib.Path) -> None:
    # each replica exports every domain series: without merging, a line per pod (or a sum
    # that counts each figure once per replica)
    board = json.loads(path.read_text(encoding="utf-8"))
    for panel, target in targets(board, "prometheus"):
        problems = replica_copies_kept(str(target["expr"]))
        assert problems == [], f"{path.name} / {panel['title']}: {problems}"


def test_host_and_process_figures_have_a_line_per_replica() -> None:
    (board,) = [d for d in dashboards().values() if d["uid"] == "monitoring-service-health"]
    per_replica = {
        "monitoring_health_metric_value",
        "monitoring_health_status",
        "service_metric_type:monitoring_health_metric_value:critical_threshold_ratio",
        "service_metric_type:monitoring_health_metric_value:warning_threshold_ratio",
    }
    checked = 0
    for panel, target in targets(board, "prometheus"):
        expr = str(target["expr"])
        if not per_replica & metric_names(expr):
            continue
        checked += 1
        assert replica_label_dropped(expr, per_replica) == [], (panel["title"], expr)
        if target.get("format") != "table":
            assert "{{replica}}" in target["legendFormat"], panel["title"]
    assert checked >= 5


def test_overview_has_a_replicas_row() -> None:
    (board,) = [d for d in dashboards().values() if d["uid"] == "monitoring-overview"]
    rows = [p for p in board["panels"] if p["type"] == "row"]
    (row,) = [r for r in rows if r["title"] == "Replicas"]
    below = [
        p
        for p in board["panels"]
        if p["type"] != "row"
        and p["gridPos"]["y"] > row["gridPos"]["y"]
        and not any(row["gridPos"]["y"] < r["gridPos"]["y"] <= p["gridPos"]["y"] for r in rows)
    ]
    names = set().union(*(metric_names(str(t["expr"])) for p in below for t in p["targets"]))
    assert {"monitoring_leader", "monitoring_background_task_failures_total"} <= names
