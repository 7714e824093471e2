"""Demo services for the health feature."""

from __future__ import annotations

from exporter.config import Config


def with_demo_services(config: Config, dsn: str, listen_address: str) -> Config:
    """Add the seed's sample services (probing real local things) to the configuration."""
    return config
