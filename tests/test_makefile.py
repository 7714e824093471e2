"""The README's two commands: what make does before the service or the tests run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_python_without_venv_says_what_to_install(tmp_path: Path) -> None:
    # Debian's python3 without python3-venv has no ensurepip module; shadow it to be that python
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ensurepip.py").write_text("raise ImportError('No module named ensurepip')\n")
    venv = tmp_path / "venv"
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    result = make(f"VENV={venv}", f"PYTHON={sys.executable}", "run", env=env)
    assert result.returncode != 0
    assert "install python3-venv" in result.stderr
    assert "apt-get install python3-venv" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not venv.exists()


def test_run_installs_the_service_and_test_installs_the_tools(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run = make("-n", f"VENV={venv}", "run")
    assert run.returncode == 0, run.stderr
    assert f"install {venv} embedded" in run.stdout
    assert "install" in run.stdout and f"{venv} test" not in run.stdout
    assert "serve --demo" in run.stdout
    test = make("-n", f"VENV={venv}", "test")
    assert test.returncode == 0, test.stderr
    assert f"install {venv} test" in test.stdout
    assert ".ci/peers" in test.stdout
