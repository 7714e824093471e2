"""The supervised loop helper: failures are counted, backed off and survived; a critical task
that keeps failing makes the replica not ready."""

from __future__ import annotations

import asyncio

import pytest

from exporter.features.tasks import Supervisor
from exporter.storage import StorageUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_failing_step_is_counted_backed_off_and_run_again() -> None:
    supervisor = Supervisor(min_backoff=0.01, max_backoff=0.05)
    supervisor.register("flaky")
    calls = 0
    sixth = asyncio.Event()

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 6:
            sixth.set()
        if calls <= 3:
            raise RuntimeError(f"boom {calls}")

    task = asyncio.create_task(supervisor.loop("flaky", step, interval=0.01))
    await asyncio.wait_for(sixth.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    state = supervisor.tasks["flaky"]
    assert state.failures == 3
    assert state.consecutive_failures == 0
    assert state.last_error == "RuntimeError: boom 3"
    assert state.last_success is not None
    families = {f.name: f for f in supervisor.collect()}
    (sample,) = families["monitoring_background_task_failures"].samples
    assert (sample.labels, sample.value) == ({"task": "flaky"}, 3.0)


def test_backoff_doubles_up_to_the_cap() -> None:
    supervisor = Supervisor(min_backoff=0.5, max_backoff=4.0)
    supervisor.register("t")
    delays = [supervisor.failed("t", StorageUnavailable()) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_critical_task_failing_longer_than_stale_after_makes_the_replica_unready() -> None:
    clock = Clock()
    supervisor = Supervisor(stale_after=30.0, clock=clock)
    supervisor.register("views", critical=True)
    supervisor.register("host")
    supervisor.succeeded("views")
    clock.now += 10
    supervisor.failed("views", RuntimeError("table missing"))
    supervisor.failed("host", RuntimeError("psutil"))
    assert supervisor.unhealthy() == []  # failing for 10 s: still serving its cache
    clock.now += 25
    assert supervisor.unhealthy() == ["views"]  # 35 s without a success
    supervisor.succeeded("views")
    assert supervisor.unhealthy() == []
    # a non-critical task never costs readiness, however long it fails
    clock.now += 1000
    supervisor.failed("host", RuntimeError("psutil"))
    assert supervisor.unhealthy() == []


async def test_a_long_lived_task_is_restarted_after_it_fails() -> None:
    supervisor = Supervisor(min_backoff=0.01)
    supervisor.register("listener")
    runs = 0
    third = asyncio.Event()

    async def run() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ConnectionError("lost")
        third.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervisor.keep_running("listener", run))
    await asyncio.wait_for(third.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert supervisor.tasks["listener"].failures == 2
