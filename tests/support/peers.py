"""The real programs the tests talk to: from .cache/peers/ (see .ci/peers), else from PATH.

``.ci/peers`` extracts Debian packages into the cache without installing them, so a program
found there runs with LD_LIBRARY_PATH pointing at the libraries extracted beside it.
``python -m tests.support.peers --check`` runs each one once and says where it came from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
FETCH = ".ci/peers"

# program -> (its path inside an extracted Debian package, the package)
PROGRAMS = {
    "prometheus": ("usr/bin/prometheus", "prometheus"),
    "promtool": ("usr/bin/promtool", "prometheus"),
    "prometheus-alertmanager": ("usr/bin/prometheus-alertmanager", "prometheus-alertmanager"),
    "amtool": ("usr/bin/amtool", "prometheus-alertmanager"),
    "pgbouncer": ("usr/sbin/pgbouncer", "pgbouncer"),
    # /usr/bin/chromium is a wrapper script with hard-wired /usr/lib paths
    "chromium": ("usr/lib/chromium/chromium", "chromium"),
    "chromedriver": ("usr/bin/chromedriver", "chromium-driver"),
}

# a harmless invocation of each, for --check
_CHECKS = {
    "chromium": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--dump-dom", "about:blank"],
}  # fmt: skip


class PeerMissing(Exception):
    """A program is neither in the cache nor on PATH."""


@dataclass(frozen=True)
class Peer:
    """A program to run and the environment it needs."""

    name: str
    path: str
    env: dict[str, str]
    cached: bool

    def argv(self, *args: str) -> list[str]:
        """The command line running this program with ``args``."""
        return [self.path, *args]


def cache_root() -> Path:
    """Where .ci/peers extracts the packages."""
    base = os.environ.get("MONITORING_PEERS_CACHE") or str(REPO / ".cache" / "peers")
    return Path(base) / "root"


def _inside(root: Path, relative: str) -> Path | None:
    """A file of the extraction; an absolute symlink is followed inside the extraction."""
    path = root / relative
    for _ in range(10):
        if path.is_symlink():
            target = os.readlink(path)
            path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
            continue
        return path if path.is_file() and os.access(path, os.X_OK) else None
    return None


def _library_path(root: Path) -> str:
    """Every folder of the extraction that holds shared libraries."""
    folders: list[str] = []
    for base in ("usr/lib", "lib"):
        for multiarch in sorted((root / base).glob("*-linux-gnu")):
            for folder in (multiarch, *sorted(p for p in multiarch.rglob("*") if p.is_dir())):
                if any(f.name.startswith("lib") and ".so" in f.name for f in folder.iterdir()):
                    folders.append(str(folder))
    return ":".join(folders)


def find(name: str) -> Peer:
    """The program ``name`` (cache first, then PATH) with the environment it needs."""
    relative, package = PROGRAMS[name]
    root = cache_root()
    env = dict(os.environ)
    found = _inside(root, relative)
    if found is not None:
        libraries = _library_path(root)
        if libraries:
            inherited = env.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = libraries + (f":{inherited}" if inherited else "")
        return Peer(name, str(found), env, cached=True)
    on_path = shutil.which(name)
    if on_path is not None:
        return Peer(name, on_path, env, cached=False)
    raise PeerMissing(
        f"{name} (Debian package {package}) is not in {root.parent} nor on PATH: run "
        f"`{FETCH}` (it fetches the test peers into the checkout, no root needed) "
        f"or install {package}"
    )


def peer(name: str) -> Peer:
    """Like :func:`find`, but a missing program fails the test with the command to run."""
    try:
        return find(name)
    except PeerMissing as exc:
        import pytest

        pytest.fail(str(exc), pytrace=False)


def run(
    name: str, *args: str, cwd: Path | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a peer to completion, capturing its output (text)."""
    found = peer(name)
    return subprocess.run(
        found.argv(*args),
        env=found.env,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _check() -> int:
    failed = 0
    for name in PROGRAMS:
        try:
            found = find(name)
        except PeerMissing as exc:
            print(f"missing  {exc}", file=sys.stderr)
            failed += 1
            continue
        args = _CHECKS.get(name, ["--version"])
        try:
            done = subprocess.run(
                found.argv(*args), env=found.env, capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"broken   {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        where = "cache" if found.cached else "PATH"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            print(f"broken   {name} ({where}, {found.path}): {' / '.join(tail)}", file=sys.stderr)
            failed += 1
        else:
            print(f"ok       {name} ({where}, {found.path})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--check"]:
        raise SystemExit("usage: python -m tests.support.peers --check")
    raise SystemExit(_check())
