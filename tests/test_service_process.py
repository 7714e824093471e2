"""The real service as a process: embedded PostgreSQL, /metrics for promtool, graceful stop."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import eventually
from tests.support import peers
from tests.support.postgres import embedded_data_dir
from tests.support.process import ServiceProcess, free_port


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """Run `promtool check metrics` over an exposition."""
    return peers.run("promtool", "check", "metrics", input=text)


async def test_serve_with_embedded_postgres_then_stop_gracefully(tmp_path: Path) -> None:
    with embedded_data_dir(tmp_path) as data_dir:
        service = ServiceProcess(["--data-dir", str(data_dir)], tmp_path / "service.log")
        try:
            await service.wait_ready(timeout=90)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{service.url}/metrics") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    text = await resp.text()
            assert "monitoring_db_up 1.0" in text
            checked = promtool_check_metrics(text)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            code, seconds = service.terminate()
            assert code == 0
            assert seconds < 20
            log = service.log()
            assert "started an embedded PostgreSQL" in log
            assert "stopped the embedded PostgreSQL" in log
        finally:
            service.close()


def log_entries(text: str) -> list[dict[str, Any]]:
    """Every line of a JSON log (a line that is not JSON fails the test)."""
    entries: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    return entries


async def test_the_demo_starts_quietly_with_a_banner_and_restarts_fast(tmp_path: Path) -> None:
    with embedded_data_dir(tmp_path) as data_dir:
        first = ServiceProcess(["--demo", "--data-dir", str(data_dir)], tmp_path / "first.log")
        try:
            await first.wait_ready(timeout=90)
            assert first.terminate()[0] == 0
        finally:
            first.close()
        entries = log_entries(first.log())
        above_info = [e for e in entries if e["level"] not in ("debug", "info")]
        assert above_info == [], "the happy path logs nothing above info"
        assert not [e for e in entries if e["logger"] == "pgserver"], "pgserver chatter is debug"
        (ready,) = [e for e in entries if e["msg"] == "ready"]
        assert ready["url"] == f"{first.url}/"
        assert ready["demo"] is True and ready["api_auth"] == "off"
        assert str(data_dir) in ready["data"] and "embedded PostgreSQL" in ready["data"]
        assert ready["stop"].startswith("SIGTERM")
        root_note = [e for e in entries if "system user 'pgserver'" in e["msg"]]
        if os.geteuid() == 0:  # PostgreSQL refuses root: pgserver runs it as its own user
            assert root_note and "pgserver" in ready["data"]
        else:
            assert not root_note

        # a second start of the same data directory, as a person at a terminal sees it
        started = time.monotonic()
        second = ServiceProcess(
            ["--demo", "--data-dir", str(data_dir), "--log.format", "text"],
            tmp_path / "second.log",
        )
        try:
            await second.wait_ready(timeout=30)
            took = time.monotonic() - started

            async def announced() -> bool:
                return "  stop:  " in second.log()

            await eventually(announced)
            assert second.terminate()[0] == 0
        finally:
            second.close()
        text = second.log()
        assert f"monitoring-exporter is ready: {second.url}/" in text
        assert f"  data:  {data_dir} (embedded PostgreSQL" in text
        assert not any(line.startswith("{") for line in text.splitlines())
        assert took < 3, f"the second start took {took:.1f} s to be ready"


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_taken_port_is_one_line_naming_the_flag(tmp_path: Path, log_format: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MONITORING_")}
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "serve", "--demo",
             "--data-dir", str(tmp_path / "pg"), "--web.listen-address", f"127.0.0.1:{port}",
             "--log.format", log_format],
            capture_output=True, text=True, check=False, timeout=60, env=env,
        )  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert f"port {port} is already in use" in line and "--web.listen-address" in line
    assert line.startswith("{") == (log_format == "json")
    assert not (tmp_path / "pg").exists(), "no embedded PostgreSQL was started for nothing"


async def test_serve_against_a_given_url_and_sigterm_exits_zero(
    tmp_path: Path, writer_url: str
) -> None:
    service = ServiceProcess(["--database-url", writer_url], tmp_path / "service.log")
    try:
        await service.wait_ready()
        code, seconds = service.terminate()
        assert code == 0
        assert seconds < 20
        assert "embedded PostgreSQL" not in service.log()
        assert '"event_loop":"uvloop' in service.log()
    finally:
        service.close()


async def test_environment_beats_the_config_file(tmp_path: Path, writer_url: str) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"web: {{listen_address: '127.0.0.1:{free_port()}'}}\n")
    service = ServiceProcess(
        [],
        tmp_path / "service.log",
        env={
            "MONITORING_DATABASE_URL": writer_url,
            "MONITORING_CONFIG": str(config),
            "MONITORING_LISTEN_ADDRESS": f"127.0.0.1:{port}",
        },
        listen_flag=False,
        port=port,
    )
    try:
        await service.wait_ready()
        assert f"127.0.0.1:{port}" in service.log()
    finally:
        service.close()


def test_migrate_command_twice_changes_nothing(database_url: str) -> None:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "exporter", "migrate", "--database-url", database_url],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    first, second = run(), run()
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "schema is up to date" in second.stderr


async def test_migrate_command_on_an_empty_database(empty_database_url: str) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "exporter", "migrate", "--database-url", empty_database_url],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "migrations applied" in result.stderr
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT max(version) FROM monitoring.schema_migrations") >= 1
    finally:
        await conn.close()


def test_check_config_console_script_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("web: {listen_address: ':9810'}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("web: {listen_adress: ':9810'}\nservices: [{name: x, tcp: {address: nope}}]\n")
    ok = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0
    failed = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 1
    assert "web.listen_adress: unknown key" in failed.stderr
    assert "services[0].tcp.address: expected host:port" in failed.stderr


@pytest.mark.parametrize("accept", ["application/openmetrics-text; version=1.0.0", "text/plain"])
async def test_metrics_formats(tmp_path: Path, writer_url: str, accept: str) -> None:
    service = ServiceProcess(["--database-url", writer_url], tmp_path / "service.log")
    try:
        await service.wait_ready()
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            headers = {"Accept": accept, "Accept-Encoding": "gzip"}
            async with session.get(f"{service.url}/metrics", headers=headers) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Encoding"] == "gzip"
                ctype = resp.headers["Content-Type"]
                body = await resp.read()
        text = gzip.decompress(body).decode()
        if accept.startswith("application/openmetrics-text"):
            assert ctype.startswith("application/openmetrics-text")
            assert text.endswith("# EOF\n")
        else:
            assert ctype.startswith("text/plain")
            assert promtool_check_metrics(text).returncode == 0
    finally:
        service.close()
