"""The demo data set (``--demo``): configuration that points at real things, and seeded rows."""

from __future__ import annotations

import msgspec

from exporter.config import Config
from exporter.demo import health, quality


def demo_config(config: Config, dsn: str, listen_address: str) -> Config:
    """The configuration with demo mode on, the demo services and the demo quality checks.

    Without tokens, API authentication is disabled; the start-up banner says so (a warning
    here was the only line above info on the happy path of ``make run``).
    """
    auth = config.auth
    if not auth.tokens and not auth.disabled:
        auth = msgspec.structs.replace(auth, disabled=True)
    config = msgspec.structs.replace(config, demo=True, auth=auth)
    config = health.with_demo_services(config, dsn, listen_address)
    return quality.with_demo_checks(config, dsn)
