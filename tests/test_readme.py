"""Every example command in the README runs as written against a ``serve --demo`` process.

``sh`` blocks run whole (bash, -e, pipefail) and must succeed; in ``console`` blocks each
``$ command`` must print exactly the lines shown under it. ``localhost:9810`` becomes the
demo's port, ``.venv/bin/`` the interpreter's folder, and curl answers an HTTP error with a
failure (``--fail-with-body``), so an example that gets a 404 fails here.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import eventually
from tests.support.postgres import embedded_data_dir
from tests.support.process import ServiceProcess

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
# The two commands themselves: tests/test_makefile.py checks what they do (and make test
# from inside the tests would run the tests again).
NOT_RUN = {"make run", "make test"}
_BLOCK = re.compile(r"^```(sh|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    """A fenced shell block of the README."""

    kind: str
    text: str
    line: int


def examples() -> list[Example]:
    text = README.read_text(encoding="utf-8")
    return [
        Example(m.group(1), m.group(2).strip(), text.count("\n", 0, m.start()) + 1)
        for m in _BLOCK.finditer(text)
    ]


def test_the_readme_has_examples_and_runs_all_but_the_two_commands() -> None:
    found = examples()
    skipped = {e.text for e in found if e.text in NOT_RUN}
    assert skipped == NOT_RUN
    assert len([e for e in found if e.text not in NOT_RUN]) >= 6


def shell_env(tmp_path: Path, data_home: Path) -> dict[str, str]:
    """The reader's shell: curl failing on HTTP errors, no MONITORING_* settings."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is a prerequisite of the README's examples: install curl")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    (wrappers / "curl").write_text(
        f'#!/bin/sh\nexec {curl} --fail-with-body --silent --show-error "$@"\n'
    )
    (wrappers / "curl").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITORING_")}
    env["PATH"] = f"{wrappers}:{env.get('PATH', '')}"
    env["XDG_DATA_HOME"] = str(data_home)  # the demo's default data directory, for selftest
    return env


def as_run_here(text: str, port: int) -> str:
    return text.replace("localhost:9810", f"127.0.0.1:{port}").replace(
        ".venv/bin/", f"{Path(sys.executable).parent}/"
    )


def run(example: Example, port: int, env: dict[str, str]) -> list[str]:
    """Run one example; the problems found (empty when it does what the README says)."""
    where = f"README.md line {example.line}"
    if example.kind == "sh":
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", as_run_here(example.text, port)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0 or not done.stdout.strip():
            return [f"{where}: exit {done.returncode}\n{done.stdout}{done.stderr}"]
        return []
    problems = []
    for chunk in example.text.split("$ ")[1:]:
        command, *expected = chunk.rstrip("\n").split("\n")
        done = subprocess.run(
            ["bash", "-c", as_run_here(command, port)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        if done.stdout.splitlines() != expected:
            problems.append(f"{where}: $ {command}\nprinted:\n{done.stdout}")
    return problems


async def test_every_example_runs_against_the_demo(tmp_path: Path) -> None:
    with embedded_data_dir(tmp_path) as data_home:
        env = shell_env(tmp_path, data_home)
        demo = ServiceProcess(["--demo"], tmp_path / "demo.log", {"XDG_DATA_HOME": str(data_home)})
        try:
            await demo.wait_ready(timeout=90)
            async with aiohttp.ClientSession() as http:

                async def seeded() -> bool:
                    async with http.get(f"{demo.url}/api/v1/alerts/1") as one:
                        async with http.get(f"{demo.url}/metrics") as metrics:
                            text = await metrics.text()
                    return one.status == 200 and 'service_up{service="data_sync"}' in text

                await eventually(seeded, timeout=30)
                problems: list[str] = []
                for example in examples():
                    if example.text not in NOT_RUN:
                        problems += await asyncio.to_thread(run, example, demo.port, env)
                assert not problems, "\n\n".join(problems)
                # the examples did what they say: alert 1 is acknowledged by ann
                async with http.get(f"{demo.url}/api/v1/alerts/1") as resp:
                    alert = await resp.json()
                assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "ann"
            assert demo.terminate()[0] == 0
        finally:
            demo.close()
