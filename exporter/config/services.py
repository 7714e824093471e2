"""The ``services`` and ``host`` sections: what to probe and which local figures to read."""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from exporter.config.section import Section
from exporter.config.types import Duration, Level, read_secret

NAME_PATTERN = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Threshold(Section, frozen=True):
    """Warning and critical levels of one metric type, and which side is bad."""

    warning: Level | None = None
    critical: Level | None = None
    direction: Literal["above", "below"] = "above"
    # consecutive samples beyond a level before the status changes (hysteresis)
    for_: int = msgspec.field(default=1, name="for")

    def __post_init__(self) -> None:
        if self.for_ < 1:
            raise ValueError("for: must be at least 1")
        if self.warning is not None and self.critical is not None:
            w, c = self.warning.value, self.critical.value
            if (self.direction == "above" and w > c) or (self.direction == "below" and w < c):
                raise ValueError(
                    f"critical: must be beyond warning for direction {self.direction!r}"
                )


class HttpProbe(Section, frozen=True):
    """Probe a URL and time the response."""

    url: str
    method: str = "GET"
    expect_status: list[int] = msgspec.field(default_factory=lambda: [200])
    body_contains: str | None = None
    tls_verify: bool = True
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url: must start with http:// or https://")


class TcpProbe(Section, frozen=True):
    """Probe a TCP address and time the connect."""

    address: str

    def __post_init__(self) -> None:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("address: expected host:port")


class PostgresProbe(Section, frozen=True):
    """Probe a PostgreSQL server with a query and time the round trip."""

    dsn: str | None = None
    dsn_env: str | None = None
    dsn_file: str | None = None
    query: str = "SELECT 1"

    def __post_init__(self) -> None:
        read_secret(self, "dsn", "dsn_env", "dsn_file", required=True)


class ProcessMatch(Section, frozen=True):
    """A local process of a service, found by name or by pid file."""

    name: str | None = None
    pid_file: str | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.pid_file is None):
            raise ValueError("name: give exactly one of name, pid_file")


class Service(Section, frozen=True):
    """One monitored service: a probe, optional local process, thresholds per metric type."""

    name: str
    interval: Duration = msgspec.field(default_factory=lambda: Duration(15))
    timeout: Duration = msgspec.field(default_factory=lambda: Duration(5))
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    postgres: PostgresProbe | None = None
    process: ProcessMatch | None = None
    thresholds: dict[str, Threshold] = msgspec.field(default_factory=dict)
    # the span over which the ``uptime`` ratio (share of successful probes) is computed
    uptime_window: Duration = msgspec.field(default_factory=lambda: Duration(3600))

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError("name: must match [a-zA-Z_][a-zA-Z0-9_]*")
        if self.timeout.seconds <= 0:
            raise ValueError("timeout: must be positive")
        if self.interval.seconds <= 0:
            raise ValueError("interval: must be positive")
        probes = [p for p in (self.http, self.tcp, self.postgres) if p is not None]
        if len(probes) > 1:
            raise ValueError("http: give at most one probe (http, tcp or postgres)")
        if not probes and self.process is None:
            raise ValueError("http: give a probe (http, tcp or postgres) or a process")
        for metric_type in self.thresholds:
            if not NAME_PATTERN.match(metric_type):
                raise ValueError(f"thresholds: metric type {metric_type!r} is not a valid name")


class Host(Section, frozen=True):
    """Host and exporter-process figures read with psutil."""

    enabled: bool = True
    interval: Duration = msgspec.field(default_factory=lambda: Duration(15))
    mounts: list[str] = msgspec.field(default_factory=lambda: ["/"])
    thresholds: dict[str, Threshold] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.interval.seconds <= 0:
            raise ValueError("interval: must be positive")


class Metrics(Section, frozen=True):
    """Limits of the pushed series."""

    series_ttl: Duration = msgspec.field(default_factory=lambda: Duration(600))
    max_series_per_family: int = 10_000
    # how often the overview verdict (monitoring_overall_status) and API overrides are re-read
    refresh_interval: Duration = msgspec.field(default_factory=lambda: Duration(15))
    # how often a replica reloads its caches in full, beside the notifications that keep them
    # current (a safety net)
    resync_interval: Duration = msgspec.field(default_factory=lambda: Duration(60))

    def __post_init__(self) -> None:
        if self.max_series_per_family < 1:
            raise ValueError("max_series_per_family: must be at least 1")
        if self.refresh_interval.seconds <= 0:
            raise ValueError("refresh_interval: must be positive")
