"""Storage: the only package that talks to PostgreSQL."""

from exporter.storage.database import Database, is_outage
from exporter.storage.errors import StorageUnavailable
from exporter.storage.listener import Listener

__all__ = ["Database", "Listener", "StorageUnavailable", "is_outage"]
