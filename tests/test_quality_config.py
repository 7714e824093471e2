"""The quality section rejects checks that cannot run, naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.config import ConfigError, parse_config
from exporter.inputs.quality_checks import plan, quote_table

BASE = {"name": "c", "source": "s", "dataset": "d"}


def load(check: dict[str, Any]) -> Any:
    return parse_config(
        {"quality": {"sources": {"s": {"dsn": "postgresql://x/y"}}, "checks": [{**BASE, **check}]}}
    )


@pytest.mark.parametrize(
    ("check", "where"),
    [
        ({"dimension": "accuracy", "table": "t"}, "quality.checks[0].table"),
        ({"dimension": "accuracy", "table": "t", "query": "SELECT 1", "valid_when": "x"},
         "quality.checks[0].table"),
        ({"dimension": "freshness", "table": "t", "timestamp_column": "ts"},
         "quality.checks[0].warn_after"),
        ({"dimension": "freshness", "table": "t", "timestamp_column": "ts", "warn_after": "2h",
          "error_after": "1h"}, "quality.checks[0].error_after"),
        ({"dimension": "accuracy", "table": "t", "allowed": ["a"]}, "quality.checks[0].column"),
        ({"dimension": "completeness", "table": "t", "columns": ["a"],
          "levels": {"warning": 90, "critical": 95}}, "quality.checks[0].levels.critical"),
        ({"dimension": "validity", "query": "SELECT 1"}, "quality.checks[0].dimension"),
    ],
)  # fmt: skip
def test_invalid_checks_are_located(check: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(check)
    assert any(e.startswith(where + ":") for e in info.value.errors), info.value.errors


def test_kinds_and_default_levels() -> None:
    fresh = load({"dimension": "freshness", "table": "t", "timestamp_column": "ts",
                  "warn_after": "1h", "error_after": "6h"}).quality.checks[0]  # fmt: skip
    assert fresh.kind == "freshness"
    assert (fresh.effective_levels.warning, fresh.effective_levels.critical) == (100, 0)
    custom = load({"dimension": "accuracy", "query": "SELECT 1"}).quality.checks[0]
    assert custom.kind == "custom"
    assert custom.effective_levels.warning == 99


def test_identifiers_are_quoted_and_values_are_parameters() -> None:
    assert quote_table('shop.or"ders') == '"shop"."or""ders"'
    check = load({"dimension": "accuracy", "table": "shop.orders", "column": "cur'rency",
                  "allowed": ["EUR", "x'); DROP TABLE t; --"], "min": 0}).quality.checks[0]  # fmt: skip
    p = plan(check)
    assert "DROP TABLE" not in p.counts
    assert '"cur\'rency"::text = ANY($1::text[])' in p.counts
    assert p.args == (["EUR", "x'); DROP TABLE t; --"], 0.0)
