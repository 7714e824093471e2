"""The real service as a process: embedded PostgreSQL, /metrics for promtool, graceful stop."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest

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


async def test_serve_against_a_given_url_and_sigterm_exits_zero(
    tmp_path: Path, database_url: str
) -> None:
    service = ServiceProcess(["--database-url", database_url], tmp_path / "service.log")
    try:
        await service.wait_ready()
        code, seconds = service.terminate()
        assert code == 0
        assert seconds < 20
        assert "embedded" not in service.log()
        assert '"event_loop":"uvloop' in service.log()
    finally:
        service.close()


async def test_environment_beats_the_config_file(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"web: {{listen_address: '127.0.0.1:{free_port()}'}}\n")
    service = ServiceProcess(
        [],
        tmp_path / "service.log",
        env={
            "MONITORING_DATABASE_URL": database_url,
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
async def test_metrics_formats(tmp_path: Path, database_url: str, accept: str) -> None:
    service = ServiceProcess(["--database-url", database_url], tmp_path / "service.log")
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
