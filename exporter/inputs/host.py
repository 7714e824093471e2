"""Host and process figures read with psutil: CPU, memory, disk, and per-service processes."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from exporter.config.services import ProcessMatch
from exporter.domain.health import StoredUnit, mount_metric_type
from exporter.domain.health_series import Sample

log = logging.getLogger(__name__)

HOST_SERVICE = "host"
EXPORTER_SERVICE = "monitoring_exporter"


@dataclass(frozen=True)
class Figure:
    """One figure in base units, for a service and metric type."""

    service: str
    metric_type: str
    value: float
    unit: StoredUnit
    metadata: dict[str, Any] = field(default_factory=dict)


class HostReader:
    """Reads the figures; keeps psutil Process objects so CPU ratios are over the last interval.

    Blocking (psutil reads /proc): call ``read`` from a worker thread.
    """

    def __init__(
        self,
        mounts: list[str],
        processes: dict[str, ProcessMatch],
        *,
        host: bool = True,
        own_pid: int | None = None,
    ) -> None:
        self.host = host
        self.mounts = mounts
        self.processes = processes
        self.cpus = psutil.cpu_count() or 1
        self._own = psutil.Process(own_pid or os.getpid())
        self._known: dict[int, psutil.Process] = {}
        # the first cpu_percent call only starts the measurement interval
        psutil.cpu_percent(interval=None)
        self._own.cpu_percent(interval=None)

    def samples(self, replica: str) -> list[Sample]:
        """Every figure as a sample of ``replica`` (blocking: call from a worker thread)."""
        return to_samples(self.read(), replica)

    def read(self) -> list[Figure]:
        """Every figure, now (host and exporter figures only when ``host`` is on)."""
        out: list[Figure] = []
        for service, match in self.processes.items():
            out += self._process_figures(service, self._find(match))
        if not self.host:
            return out
        out += [
            Figure(HOST_SERVICE, "cpu_usage", psutil.cpu_percent(interval=None) / 100, "ratio"),
            Figure(HOST_SERVICE, "memory_usage", psutil.virtual_memory().percent / 100, "ratio"),
        ]
        for mount in self.mounts:
            try:
                usage = psutil.disk_usage(mount)
            except OSError:
                continue
            out.append(
                Figure(
                    HOST_SERVICE,
                    mount_metric_type(mount),
                    usage.percent / 100,
                    "ratio",
                    {"mount": mount},
                )
            )
        out += self._process_figures(EXPORTER_SERVICE, [self._own])
        return out

    def _process_figures(self, service: str, procs: list[psutil.Process]) -> list[Figure]:
        now = time.time()
        cpu = rss = 0.0
        started: float | None = None
        alive = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(interval=None) / 100 / self.cpus
                    rss += proc.memory_info().rss
                    created = proc.create_time()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            alive += 1
            started = created if started is None else min(started, created)
        out = [Figure(service, "process_count", alive, "count")]
        if alive and started is not None:
            out += [
                Figure(service, "process_cpu_usage", cpu, "ratio"),
                Figure(service, "process_memory_rss", rss, "bytes"),
                Figure(service, "process_uptime", max(0.0, now - started), "s"),
            ]
        return out

    def _find(self, match: ProcessMatch) -> list[psutil.Process]:
        pids: list[int] = []
        if match.pid_file is not None:
            try:
                pids = [int(Path(match.pid_file).read_text().split()[0])]
            except (OSError, ValueError, IndexError):
                pids = []
        else:
            for proc in psutil.process_iter(["name", "cmdline"]):
                name = proc.info.get("name") or ""
                cmdline = proc.info.get("cmdline") or []
                argv0 = os.path.basename(cmdline[0]) if cmdline else ""
                if match.name in (name, argv0):
                    pids.append(proc.pid)
        found = []
        for pid in pids:
            known = self._known.get(pid)
            if known is not None and known.is_running():
                proc = known
            else:
                try:
                    proc = psutil.Process(pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                proc.cpu_percent(interval=None)
                self._known[pid] = proc
            found.append(proc)
        # forget processes that are gone, so the cache does not grow without bound
        live = set(pids)
        for pid in [p for p in self._known if p not in live and not self._known[p].is_running()]:
            del self._known[pid]
        return found


def to_samples(figures: list[Figure], replica: str) -> list[Sample]:
    """Figures as health samples recorded now; they name the replica that measured them."""
    now = datetime.now(UTC)
    return [
        Sample(f.service, f.metric_type, f.value, f.unit, "host", now, f.metadata, None, replica)
        for f in figures
    ]
