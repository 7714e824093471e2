"""Demo data sources and checks for the quality feature."""

from __future__ import annotations

from exporter.config import Config


def with_demo_checks(config: Config, dsn: str) -> Config:
    """Add checks over the demo_sources schema of the service's own database."""
    return config
