"""Configuration: the spec's example parses; every error is reported with its location."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import main
from exporter.config import ConfigError, load_config
from exporter.config.types import parse_duration

SPEC_EXAMPLE = """
auth:
  tokens:
    - {name: alertmanager, token_env: AM_WEBHOOK_TOKEN, scopes: [write]}
    - {name: grafana, token_file: TOKEN_FILE, scopes: [read]}
    - {name: oncall, token: "s3cret", scopes: [read, ack]}
services:
  - name: dashboard_api
    interval: 15s
    timeout: 5s
    http: {url: "http://dashboard:3000/api/health", expect_status: [200]}
    thresholds:
      response_time: {warning: 500ms, critical: 1s}
  - name: supabase_db
    postgres: {dsn_env: SUPABASE_DB_URL, query: "SELECT 1"}
  - name: data_sync
    tcp: {address: "sync:8080"}
    process: {name: sync-worker}
    thresholds:
      uptime: {warning: 0.99, critical: 0.95, direction: below}
quality:
  sources:
    shop: {dsn_env: SHOP_DB_URL}
    warehouse: {dsn_file: DSN_FILE}
  checks:
    - name: orders_email_complete
      source: shop
      dataset: orders
      dimension: completeness
      table: shopify.orders
      columns: [email]
      interval: 5m
      levels: {warning: 99, critical: 95}
    - {name: orders_total_valid, source: shop, dataset: orders, dimension: accuracy,
       table: shopify.orders, valid_when: "total >= 0"}
    - {name: orders_fresh, source: shop, dataset: orders, dimension: freshness,
       table: shopify.orders, timestamp_column: updated_at, warn_after: 1h, error_after: 6h}
    - name: orders_match_warehouse
      source: shop
      dataset: orders
      dimension: consistency
      compare:
        left: {source: shop, query: "SELECT id FROM shopify.orders"}
        right: {source: warehouse, query: "SELECT order_id FROM sales.orders"}
    - name: members_email_valid
      source: shop
      dataset: members
      dimension: accuracy
      query: "SELECT count(*) AS total, count(*) FILTER (WHERE email LIKE '%@%') AS valid FROM kajabi.members"
alerts:
  alertmanager_url: "http://alertmanager:9093"
"""


@pytest.fixture
def spec_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_config: Callable[[Any], Path]
) -> Path:
    token_file = tmp_path / "grafana-token"
    token_file.write_text("grafana-secret\n")
    dsn_file = tmp_path / "warehouse-dsn"
    dsn_file.write_text("postgresql://wh@db/warehouse\n")
    monkeypatch.setenv("AM_WEBHOOK_TOKEN", "am-secret")
    monkeypatch.setenv("SUPABASE_DB_URL", "postgresql://supabase@db/postgres")
    monkeypatch.setenv("SHOP_DB_URL", "postgresql://shop@db/shop")
    text = SPEC_EXAMPLE.replace("TOKEN_FILE", str(token_file)).replace("DSN_FILE", str(dsn_file))
    return write_config(text)


def test_spec_example_parses_with_secrets_resolved(spec_example: Path) -> None:
    config = load_config(spec_example)
    assert [t.token for t in config.auth.tokens] == ["am-secret", "grafana-secret", "s3cret"]
    assert config.auth.tokens[2].scopes == ["read", "ack"]
    api = config.services[0]
    assert api.interval.seconds == 15
    assert api.timeout.seconds == 5
    rt = api.thresholds["response_time"]
    assert rt.warning is not None
    assert rt.warning.value == 0.5
    assert rt.critical is not None
    assert rt.critical.value == 1.0
    assert config.services[1].postgres is not None
    assert config.services[1].postgres.dsn == "postgresql://supabase@db/postgres"
    uptime = config.services[2].thresholds["uptime"]
    assert uptime.direction == "below"
    assert uptime.critical is not None
    assert uptime.critical.value == 0.95
    assert config.quality.sources["warehouse"].dsn == "postgresql://wh@db/warehouse"
    assert config.quality.checks[2].error_after is not None
    assert config.quality.checks[2].error_after.seconds == 6 * 3600
    assert config.alerts.alertmanager_url == "http://alertmanager:9093"


def test_no_file_means_all_defaults() -> None:
    config = load_config(None)
    assert config.web.listen_address == ":9810"
    assert config.database.schema == "monitoring"
    assert config.services == []
    assert config.auth.tokens == []


def test_check_config_accepts_the_spec_example(
    spec_example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(spec_example)]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web: {listen_addres: ':1'}\n", "web.listen_addres: unknown key"),
        ("colour: blue\n", "colour: unknown key"),
        (
            "services:\n  - {name: a, tcp: {address: 'x:1'}}\n  - {name: b, tcp: {address: 'x:1'}}\n"
            "  - name: c\n    http: {url: 'http://x'}\n"
            "    thresholds: {response_time: {warning: fast, critical: 1s}}\n",
            "services[2].thresholds.response_time.warning: expected a number",
        ),
        (
            "services:\n  - {name: a, interval: 5 parsecs, tcp: {address: 'x:1'}}\n",
            "services[0].interval: invalid duration '5 parsecs'",
        ),
        ("web: {max_body_bytes: lots}\n", "web.max_body_bytes: expected an integer, got a string"),
        (
            "auth: {tokens: [{name: g, token_file: /nonexistent/token, scopes: [read]}]}\n",
            "auth.tokens[0].token_file: cannot read /nonexistent/token",
        ),
        (
            "auth: {tokens: [{name: g, token_env: MEXP_SURELY_UNSET, scopes: [read]}]}\n",
            "auth.tokens[0].token_env: environment variable MEXP_SURELY_UNSET is not set",
        ),
        (
            "auth: {tokens: [{name: g, token: x, scopes: [root]}]}\n",
            "auth.tokens[0].scopes[0]: invalid enum value 'root'",
        ),
        ("services: [{name: a}]\n", "services[0].http: give a probe"),
        (
            "web: {allowed_origins: ['https://ok.example', 'https://x.example/app']}\n",
            "web.allowed_origins[1]: expected scheme://host[:port] (no path)",
        ),
        ("web: {allowed_origins: '*'}\n", "web.allowed_origins: expected a list, got a string"),
        ("web: {stream_ticket_ttl: 0s}\n", "web.stream_ticket_ttl: must be more than 0"),
        ("web: [1, 2]\n", "web: expected a mapping"),
        ("web: {listen_address: ':9810'\n", "invalid YAML"),
    ],
)
def test_check_config_names_the_location(
    text: str,
    expected: str,
    write_config: Callable[[Any], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(text)
    assert main(["check-config", str(path)]) == 1
    assert expected in capsys.readouterr().err


def test_every_error_is_listed_not_just_the_first(write_config: Callable[[Any], Path]) -> None:
    path = write_config(
        "web: {bogus: 1}\n"
        "retention: {health_metrics: forever}\n"
        "services:\n"
        "  - {name: a, tcp: {address: 'x:1'}, timeout: soon}\n"
        "  - {name: b, tcp: {address: 'x:1'}, extra: 1}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = info.value.errors
    assert len(errors) == 4
    assert [e.split(":")[0] for e in errors] == [
        "web.bogus",
        "services[0].timeout",
        "services[1].extra",
        "retention.health_metrics",
    ]


def test_duplicate_service_names_are_rejected(write_config: Callable[[Any], Path]) -> None:
    path = write_config(
        "services: [{name: a, tcp: {address: 'x:1'}}, {name: a, tcp: {address: 'y:2'}}]"
    )
    with pytest.raises(ConfigError, match=r"services\[1\]\.name: duplicate service name 'a'"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("15s", 15), ("5m", 300), ("2h", 7200), ("30d", 2592000), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 s", "s", "1x", "-5s", "5s3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
