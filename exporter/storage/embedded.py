"""An embedded PostgreSQL (the ``pgserver`` wheel) for when no database URL is given."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import platformdirs

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """Where the embedded database keeps its files unless ``--data-dir`` says otherwise."""
    return Path(platformdirs.user_data_dir("monitoring-exporter")) / "postgres"


class EmbeddedPostgres:
    """Start a private PostgreSQL in a data directory; stop it on exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start the server (initialising the directory on first use); return its URL."""
        try:
            pgserver = importlib.import_module("pgserver")  # optional dependency
        except ImportError as exc:
            raise RuntimeError(
                "no database URL given and the embedded PostgreSQL is not installed: "
                "pip install 'monitoring-exporter[embedded]' or pass --database-url"
            ) from exc
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(str(self.data_dir), cleanup_mode="stop")
        url: str = self._server.get_uri()
        log.warning(
            "no database URL given: started an embedded PostgreSQL",
            extra={"data_dir": str(self.data_dir)},
        )
        return url

    def stop(self) -> None:
        """Stop the server if this process started it."""
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()
            log.info("stopped the embedded PostgreSQL", extra={"data_dir": str(self.data_dir)})
