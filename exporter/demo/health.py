"""Demo services for the health feature: the seed's sample services, probing real local things."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import msgspec

from exporter.config import Config
from exporter.config.services import Service
from exporter.config.types import dec_hook
from exporter.domain.health import StoredUnit
from exporter.domain.health_series import Sample, Source

DEMO_SERVICES = ("dashboard_api", "supabase_db", "data_sync")


def _local(listen_address: str) -> str:
    host, _, port = listen_address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def with_demo_services(config: Config, dsn: str, listen_address: str) -> Config:
    """Add the seed's sample services (probing real local things) to the configuration.

    dashboard API response time: an http probe of this exporter's own /livez; the Supabase DB
    connection: a postgres probe of the service's own database; data-sync uptime: a tcp probe
    of this exporter's own listener with an uptime rule (the demo depends on nothing it does
    not run: a probe of 127.0.0.1:5432 was down on a fresh machine and "healthy" next to an
    unrelated PostgreSQL). CPU and memory come from the host section.
    """
    raw = {
        "dashboard_api": {
            "interval": "10s",
            "timeout": "2s",
            "http": {"url": f"http://{_local(listen_address)}/livez", "expect_status": [200]},
            "thresholds": {"response_time": {"warning": "500ms", "critical": "1s"}},
        },
        "supabase_db": {
            "interval": "15s",
            "timeout": "3s",
            "postgres": {"dsn": dsn, "query": "SELECT 1"},
            "thresholds": {"response_time": {"warning": "100ms", "critical": "500ms"}},
        },
        "data_sync": {
            "interval": "15s",
            "timeout": "3s",
            "tcp": {"address": _local(listen_address)},
            "thresholds": {"uptime": {"warning": 0.99, "critical": 0.95, "direction": "below"}},
        },
    }
    existing = {s.name for s in config.services}
    added = [
        msgspec.convert({"name": name, **body}, Service, dec_hook=dec_hook)
        for name, body in raw.items()
        if name not in existing
    ]
    host = config.host
    if not host.thresholds:
        host = msgspec.convert(
            {
                "thresholds": {
                    "cpu_usage": {"warning": 0.8, "critical": 0.95, "for": 3},
                    "memory_usage": {"warning": 0.85, "critical": 0.95, "for": 3},
                },
                "interval": host.interval.seconds,
                "mounts": host.mounts,
                "enabled": host.enabled,
            },
            type(host),
            dec_hook=dec_hook,
        )
    return msgspec.structs.replace(config, services=[*config.services, *added], host=host)


def demo_history(now: datetime, hours: int = 24, step_minutes: int = 10) -> list[Sample]:
    """A day of plausible samples for the demo services, so history charts are not empty."""
    rng = random.Random(42)
    out: list[Sample] = []
    steps = hours * 60 // step_minutes
    for i in range(steps, 0, -1):
        at = now - timedelta(minutes=i * step_minutes)
        daily = 0.5 + 0.5 * math.sin(2 * math.pi * (at.hour + at.minute / 60) / 24)
        figures: list[tuple[str, str, float, StoredUnit]] = [
            ("dashboard_api", "response_time", 0.08 + 0.3 * daily + rng.random() * 0.05, "s"),
            ("dashboard_api", "up", 1.0, ""),
            ("supabase_db", "response_time", 0.002 + rng.random() * 0.004, "s"),
            ("data_sync", "uptime", 1.0 if rng.random() > 0.05 else 0.97, "ratio"),
            ("host", "cpu_usage", 0.2 + 0.5 * daily + rng.random() * 0.1, "ratio"),
            ("host", "memory_usage", 0.55 + 0.1 * daily, "ratio"),
        ]
        for service, metric_type, value, unit in figures:
            source: Source = "host" if service == "host" else "probe"
            out.append(Sample(service, metric_type, value, unit, source, at, {"demo": True}))
    return out
