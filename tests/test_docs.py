"""README promises that can drift: the configuration reference and the two commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import load_config
from exporter.config.reference import render

README = Path(__file__).resolve().parents[1] / "README.md"


def test_configuration_reference_matches_the_config_types() -> None:
    text = README.read_text(encoding="utf-8")
    assert render() in text, "run `python -m exporter.config.reference` to refresh README.md"


def test_readme_gives_the_run_and_test_commands_ci_uses() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make run" in text
    assert "make test" in text
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci


def test_the_example_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = README.parent / "examples" / "config.yaml"
    secrets = tmp_path / "secret"
    secrets.write_text("x\n")
    text = example.read_text(encoding="utf-8").replace("/run/secrets/grafana-token", str(secrets))
    text = text.replace("/run/secrets/warehouse-dsn", str(secrets))
    for name in (
        "MONITORING_DATABASE_URL",
        "AM_WEBHOOK_TOKEN",
        "ONCALL_TOKEN",
        "SUPABASE_DB_URL",
        "SHOP_DB_URL",
    ):
        monkeypatch.setenv(name, "postgresql://x@y/z")
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert [s.name for s in config.services] == ["dashboard_api", "supabase_db", "data_sync"]
