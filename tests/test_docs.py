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


def test_the_example_config_is_valid_with_its_placeholder_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkout = README.parent
    monkeypatch.chdir(checkout)  # its secret files are named relative to the checkout
    for line in (checkout / "examples" / "config.env").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
    config = load_config("examples/config.yaml")
    assert [s.name for s in config.services] == ["dashboard_api", "supabase_db", "data_sync"]
    assert config.auth.tokens[1].token == "example-grafana-token"
