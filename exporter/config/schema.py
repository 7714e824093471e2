"""The root configuration object and its smaller sections; defaults live here."""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from exporter.config.alerts import Alerts
from exporter.config.heartbeats import Heartbeat
from exporter.config.performance_logs import PerformanceLogs, Retention
from exporter.config.quality import Quality
from exporter.config.section import Section
from exporter.config.services import Host, Metrics, Service
from exporter.config.types import Duration, read_secret

Scope = Literal["read", "write", "ack", "admin"]
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# what a browser sends in Origin: a scheme, a host and maybe a port, nothing after
_ORIGIN = re.compile(r"https?://(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?")


class Database(Section, frozen=True):
    """Where the service stores its tables, and how it connects."""

    #: libpq URL of the service's database (else MONITORING_DATABASE_URL, else embedded)
    url: str | None = None
    #: environment variable holding the URL
    url_env: str | None = None
    #: file holding the URL
    url_file: str | None = None
    #: a direct (or session-mode) URL for LISTEN, the leader's lease and migrations, when
    #: ``url`` points at a transaction pooler (PgBouncer, Supavisor); default: ``url``
    direct_url: str | None = None
    #: environment variable holding the direct URL
    direct_url_env: str | None = None
    #: file holding the direct URL
    direct_url_file: str | None = None
    #: cache prepared statements per connection; turn off behind a transaction pooler that
    #: does not support them
    statement_cache: bool = True
    #: schema that holds every table
    schema: str = "monitoring"
    #: pool size at rest
    min_connections: int = 2
    #: pool size at most
    max_connections: int = 10
    #: time to open a connection
    connect_timeout: Duration = msgspec.field(default_factory=lambda: Duration(5))
    #: longest a statement may run
    command_timeout: Duration = msgspec.field(default_factory=lambda: Duration(30))
    #: longest a request waits for a pooled connection (then 503)
    acquire_timeout: Duration = msgspec.field(default_factory=lambda: Duration(5))
    #: data directory of the embedded PostgreSQL (same as --data-dir)
    data_dir: str | None = None

    def __post_init__(self) -> None:
        read_secret(self, "url", "url_env", "url_file", required=False)
        read_secret(self, "direct_url", "direct_url_env", "direct_url_file", required=False)
        if not _SCHEMA_NAME.match(self.schema):
            raise ValueError("schema: must be a lower-case SQL identifier")
        if not 1 <= self.min_connections <= self.max_connections:
            raise ValueError("min_connections: must be between 1 and max_connections")


class Web(Section, frozen=True):
    """The HTTP listener and its request limits."""

    #: HOST:PORT or :PORT to listen on
    listen_address: str = ":9810"
    #: this replica's name in logs, /readyz and the ``replica`` label of host figures
    #: (default: host name and port; MONITORING_REPLICA)
    replica: str | None = None
    #: require a read token on /metrics
    metrics_auth: bool = False
    #: body limit of API writes (after gzip inflation); larger is 413
    max_body_bytes: int = 1 << 20
    #: body limit of the Alertmanager webhook (at least 16 MiB)
    alertmanager_max_body_bytes: int = 32 << 20
    #: body limit of performance-log posts
    performance_logs_max_body_bytes: int = 64 << 20
    #: how long in-flight requests may take after SIGTERM
    shutdown_timeout: Duration = msgspec.field(default_factory=lambda: Duration(15))
    #: a WebSocket client this many events behind is disconnected (close code 1013)
    stream_queue_size: int = 1000
    #: WebSocket ping interval
    stream_heartbeat: Duration = msgspec.field(default_factory=lambda: Duration(20))
    #: how long a stream ticket (POST /api/v1/stream/tickets) opens a stream, once
    stream_ticket_ttl: Duration = msgspec.field(default_factory=lambda: Duration(30))
    #: origins (scheme://host[:port]) whose pages may open streams and get tickets; the
    #: service's own origin always may
    allowed_origins: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _, sep, port = self.listen_address.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("listen_address: expected HOST:PORT or :PORT")
        if self.alertmanager_max_body_bytes < 16 << 20:
            raise ValueError("alertmanager_max_body_bytes: must be at least 16 MiB")
        if not 0 < self.stream_ticket_ttl.seconds <= 3600:
            raise ValueError("stream_ticket_ttl: must be more than 0 and at most 1h")
        for i, origin in enumerate(self.allowed_origins):
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"allowed_origins[{i}]: expected scheme://host[:port] (no path), got {origin!r}"
                )
        # browsers send origins in lower case (and without the default port they were given)
        msgspec.structs.force_setattr(
            self, "allowed_origins", [o.lower() for o in self.allowed_origins]
        )


class Token(Section, frozen=True):
    """A bearer token and the scopes it grants."""

    #: shown in logs and 403 messages (the token never is)
    name: str
    #: the token inline
    token: str | None = None
    #: environment variable holding the token
    token_env: str | None = None
    #: file holding the token
    token_file: str | None = None
    #: read, write, ack, admin (admin holds all)
    scopes: list[Scope] = msgspec.field(default_factory=lambda: ["read"])

    def __post_init__(self) -> None:
        read_secret(self, "token", "token_env", "token_file", required=True)


class Auth(Section, frozen=True):
    """API authentication: bearer tokens with scopes."""

    #: bearer tokens; none means the API answers 401 unless disabled
    tokens: list[Token] = msgspec.field(default_factory=list)
    #: serve the API without tokens (explicitly; --demo may set it)
    disabled: bool = False


class Console(Section, frozen=True):
    """The operator console at ``/``: its sessions and its links to Grafana."""

    #: how long a console session lasts after sign-in
    session_ttl: Duration = msgspec.field(default_factory=lambda: Duration(12 * 3600))
    #: Grafana's base URL (e.g. https://grafana.example.com); the console links its
    #: dashboards (fixed UIDs) when set
    grafana_url: str | None = None

    def __post_init__(self) -> None:
        if not 60 <= self.session_ttl.seconds <= 30 * 86400:
            raise ValueError("session_ttl: must be between 1m and 30d")
        url = self.grafana_url
        if url is not None and not (url.startswith(("http://", "https://")) and "<" not in url):
            raise ValueError("grafana_url: must be an http:// or https:// URL")


class Config(Section, frozen=True):
    """The whole configuration, parsed once and never changed."""

    database: Database = msgspec.field(default_factory=Database)
    web: Web = msgspec.field(default_factory=Web)
    auth: Auth = msgspec.field(default_factory=Auth)
    services: list[Service] = msgspec.field(default_factory=list)
    host: Host = msgspec.field(default_factory=Host)
    quality: Quality = msgspec.field(default_factory=Quality)
    alerts: Alerts = msgspec.field(default_factory=Alerts)
    performance_logs: PerformanceLogs = msgspec.field(default_factory=PerformanceLogs)
    retention: Retention = msgspec.field(default_factory=Retention)
    metrics: Metrics = msgspec.field(default_factory=Metrics)
    heartbeats: list[Heartbeat] = msgspec.field(default_factory=list)
    console: Console = msgspec.field(default_factory=Console)
    #: demo mode (set by --demo)
    demo: bool = False

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for i, service in enumerate(self.services):
            if service.name in seen:
                raise ValueError(f"services[{i}].name: duplicate service name {service.name!r}")
            seen.add(service.name)
        names: set[str] = set()
        alertnames: set[str] = set()
        for i, beat in enumerate(self.heartbeats):
            if beat.name in names:
                raise ValueError(f"heartbeats[{i}].name: duplicate heartbeat name {beat.name!r}")
            names.add(beat.name)
            if beat.alertname is not None and beat.alertname in alertnames:
                raise ValueError(f"heartbeats[{i}].alertname: {beat.alertname!r} beats another")
            if beat.alertname is not None:
                alertnames.add(beat.alertname)
