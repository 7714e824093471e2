"""Logs: JSON lines for machines, text for people, library chatter kept below info."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator

import pytest

from exporter.log import BANNER, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back the way pytest had it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_json_lines_carry_the_extra_fields(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", "json")
    logging.getLogger("exporter.x").info("listening", extra={"address": ":9810"})
    (line,) = lines(capsys)
    entry = json.loads(line)
    assert entry["msg"] == "listening" and entry["level"] == "info"
    assert entry["logger"] == "exporter.x" and entry["address"] == ":9810"


def test_text_for_people(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "text")
    logging.getLogger("exporter.x").warning("slow", extra={"took": 1.5, "where": "a b"})
    (line,) = lines(capsys)
    assert not line.startswith("{")
    assert "warning" in line and "slow" in line and "took=1.5" in line and "where='a b'" in line


def test_a_banner_is_printed_as_it_is_in_text_and_as_fields_in_json(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", "text")
    banner = ["ready: http://localhost:9810/", "  stop:  Ctrl+C"]
    logging.getLogger("exporter").info("ready", extra={BANNER: banner, "url": "u"})
    assert lines(capsys) == banner
    setup_logging("info", "json")
    logging.getLogger("exporter").info("ready", extra={BANNER: banner, "url": "u"})
    (line,) = lines(capsys)
    entry = json.loads(line)
    assert entry["url"] == "u" and BANNER not in entry


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_pgserver_chatter_is_debug(
    restore_logging: None, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    setup_logging("info", "json" if fmt == "json" else "text")
    pgserver = logging.getLogger("pgserver")
    pgserver.info("Running commandline: initdb ...")
    assert lines(capsys) == []
    pgserver.error("Failed to start server")
    assert len(lines(capsys)) == 1, "its errors still show"
    setup_logging("debug", "json")
    pgserver.info("Running commandline: initdb ...")
    (line,) = lines(capsys)
    assert json.loads(line)["level"] == "debug"


def test_python_warnings_become_log_lines(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("info", "json")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("something odd", RuntimeWarning, stacklevel=1)
    (line,) = lines(capsys)
    entry = json.loads(line)
    assert entry["level"] == "warning" and "something odd" in entry["msg"]
