"""Run the real service as a subprocess, the way an operator or a kubelet sees it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServiceProcess:
    """``python -m exporter serve ...`` with its log in a file."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        *,
        listen_flag: bool = True,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MONITORING_")}
        full_env.update(env or {})
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "serve",
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll /readyz until 200; fail with the log if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"service exited early:\n{self.log()}")
                try:
                    async with session.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"service not ready within {timeout} s:\n{self.log()}")

    def terminate(self, timeout: float = 25.0) -> tuple[int, float]:
        """SIGTERM; return (exit code, seconds it took to exit)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def log(self) -> str:
        """Everything the service wrote so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        """Kill the process if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@contextmanager
def replica_processes(
    tmp_path: Path, config: dict[str, Any], database_url: str, n: int = 3
) -> Iterator[list[ServiceProcess]]:
    """``n`` replicas of one configuration on one database (``MONITORING_REPLICA`` r0, r1,
    ...), each logging to its own file; closed on exit whatever state the test is in."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    processes = [
        ServiceProcess(
            ["--config", str(path), "--database-url", database_url],
            tmp_path / f"replica-{i}.log",
            env={"MONITORING_REPLICA": f"r{i}"},
        )
        for i in range(n)
    ]
    try:
        yield processes
    finally:
        for p in processes:
            p.close()
