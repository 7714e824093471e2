"""An embedded PostgreSQL (the ``pgserver`` wheel) for when no database URL is given."""

from __future__ import annotations

import importlib
import logging
import os
import pwd
import warnings
from pathlib import Path
from typing import Any

import platformdirs

log = logging.getLogger(__name__)

#: the system user pgserver runs PostgreSQL as when started by root (PostgreSQL refuses root)
ROOT_RUNS_AS = "pgserver"


def default_data_dir() -> Path:
    """Where the embedded database keeps its files unless ``--data-dir`` says otherwise."""
    return Path(platformdirs.user_data_dir("monitoring-exporter")) / "postgres"


def runs_as() -> str | None:
    """The system user the embedded server runs as, when it is not the current one."""
    return ROOT_RUNS_AS if os.geteuid() == 0 else None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _import_pgserver() -> Any:
    try:
        with warnings.catch_warnings():
            # pgserver reads platformdirs' runtime dir at import, which warns when
            # XDG_RUNTIME_DIR is unset (services, containers, sudo) and falls back to /tmp
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            return importlib.import_module("pgserver")  # optional dependency
    except ImportError as exc:
        raise RuntimeError(
            "no database URL given and the embedded PostgreSQL is not installed: "
            "pip install 'monitoring-exporter[embedded]' or pass --database-url"
        ) from exc


class EmbeddedPostgres:
    """Start a private PostgreSQL in a data directory; stop it on exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start the server (initialising the directory on first use); return its URL."""
        pgserver = _import_pgserver()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = runs_as()
        if user is not None:
            # say it before pgserver does it: it is a change to the machine
            log.info(
                f"running as root: the embedded PostgreSQL runs as system user {user!r}"
                + ("" if _user_exists(user) else ", which pgserver now creates (useradd)")
                + "; pgserver opens the folders above its data directory to other users"
                " (chmod o+rx) so that user reaches it",
                extra={"data_dir": str(self.data_dir)},
            )
        pid_file = self.data_dir / "postmaster.pid"
        before = pid_file.read_bytes() if pid_file.exists() else None
        self._server = pgserver.get_server(str(self.data_dir), cleanup_mode="stop")
        url: str = self._server.get_uri()
        # a second process (selftest, migrate) shares a server another one started; pgserver
        # stops it when the last of them exits
        shared = before is not None and pid_file.exists() and pid_file.read_bytes() == before
        log.info(
            "no database URL given: "
            + (
                "using the embedded PostgreSQL already running"
                if shared
                else "started an embedded PostgreSQL"
            ),
            extra={"data_dir": str(self.data_dir)},
        )
        return url

    def stop(self) -> None:
        """Stop the server if this process started it."""
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()
            log.info("stopped the embedded PostgreSQL", extra={"data_dir": str(self.data_dir)})
