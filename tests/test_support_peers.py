"""How the tests find their peers: the extracted cache first, then PATH, else the command to run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import peers


def test_a_missing_program_names_the_command_that_fetches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITORING_PEERS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(peers.PeerMissing) as caught:
        peers.find("amtool")
    assert "run `.ci/peers`" in str(caught.value)
    assert "prometheus-alertmanager" in str(caught.value)


def test_the_cache_wins_and_brings_its_libraries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cache" / "root"
    program = root / "usr" / "sbin" / "pgbouncer"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    libraries = root / "usr" / "lib" / "x86_64-linux-gnu"
    libraries.mkdir(parents=True)
    (libraries / "libcares.so.2").write_text("")
    on_path = tmp_path / "bin" / "pgbouncer"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("MONITORING_PEERS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(on_path.parent))
    found = peers.find("pgbouncer")
    assert found.cached and found.path == str(program)
    assert found.env["LD_LIBRARY_PATH"].split(":")[0] == str(libraries)
    program.unlink()
    found = peers.find("pgbouncer")
    assert not found.cached and found.path == str(on_path)
    assert found.env.get("LD_LIBRARY_PATH") == os.environ.get("LD_LIBRARY_PATH")
