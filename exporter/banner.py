"""The start-up banner: the URL, what is served, where the data is, how to stop."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


def split_listen_address(address: str) -> tuple[str | None, int]:
    """``HOST:PORT`` or ``:PORT`` into (host or None for all interfaces, port)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    return (host or None), int(port)


@dataclass(frozen=True)
class Announcement:
    """What the start-up banner tells a person: where to look, what it is, how to stop."""

    listen_address: str
    data: str
    demo: bool = False
    api_auth: bool = True

    @property
    def url(self) -> str:
        """A URL for this machine's browser."""
        host, port = split_listen_address(self.listen_address)
        if host in (None, "0.0.0.0", "::"):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def fields(self) -> dict[str, Any]:
        """The banner as log fields (the JSON log line)."""
        return {
            "url": self.url,
            "demo": self.demo,
            "data": self.data,
            "api_auth": "on" if self.api_auth else "off",
            "stop": _how_to_stop(),
        }

    def lines(self) -> list[str]:
        """The banner as text, for a terminal."""
        lines = [f"monitoring-exporter is ready: {self.url}"]
        if self.demo:
            lines.append(
                "  demo:  seeded demo data (services, incidents, quality checks, performance"
                " logs); open the console at / or try /api/v1/overview and /metrics"
            )
        if not self.api_auth:
            lines.append("  auth:  off: the API answers without a token (no tokens configured)")
        lines.append(f"  data:  {self.data}")
        lines.append(f"  stop:  {_how_to_stop()}")
        return lines


def _how_to_stop() -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        return "Ctrl+C"
    return f"SIGTERM (kill {os.getpid()})"


def where(dsn: str) -> str:
    """A database URL without its password, for people."""
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return f"PostgreSQL at {parts.geturl()}"
