"""Supervised background work: every loop of the service runs through one helper.

A task that fails is logged, counted (``monitoring_background_task_failures_total{task}``),
backed off and run again; it never ends quietly. ``/readyz?verbose`` lists every task with its
last success. Readiness: a *critical* task (one whose failure makes this replica's answers
wrong, such as keeping its caches in step with PostgreSQL) that has not succeeded for
``stale_after`` seconds while failing makes the replica not ready, so a load balancer sends
requests elsewhere; every other task only shows in the list and the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.storage import StorageUnavailable

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[Any]]
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


@dataclass
class TaskState:
    """What one task did lately."""

    name: str
    critical: bool
    max_backoff: float = 30.0
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_success: float | None = None  # Unix time
    last_failure: float | None = None
    last_error: str | None = None
    started: float = 0.0  # Unix time the task started

    def healthy(self, now: float, stale_after: float) -> bool:
        """False for a critical task that keeps failing (see the module)."""
        if not self.critical or self.consecutive_failures == 0:
            return True
        since = self.last_success if self.last_success is not None else self.started
        return now - since < stale_after

    def describe(self) -> dict[str, Any]:
        """The task as /readyz?verbose shows it."""
        return {
            "critical": self.critical,
            "runs": self.runs,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_success": self.last_success,
            "last_error": self.last_error,
        }


class Supervisor:
    """Runs an app's background tasks; see the module."""

    def __init__(
        self,
        *,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stale_after: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stale_after = stale_after
        self.clock = clock
        self.tasks: dict[str, TaskState] = {}

    # ------------------------------------------------------------------ accounting
    def register(
        self, name: str, *, critical: bool = False, max_backoff: float | None = None
    ) -> TaskState:
        """Start accounting for a task (names are unique)."""
        if name in self.tasks:
            raise ValueError(f"task {name!r} is already registered")
        backoff = self.max_backoff if max_backoff is None else max_backoff
        state = self.tasks[name] = TaskState(name, critical, backoff, started=self.clock())
        return state

    def succeeded(self, name: str) -> None:
        """Record a successful run (or unit of work) of a task."""
        state = self.tasks[name]
        state.runs += 1
        state.consecutive_failures = 0
        state.last_success = self.clock()

    def failed(self, name: str, exc: BaseException, *, logged: bool = False) -> float:
        """Record a failure; returns how long to back off before trying again.

        ``logged``: the caller logged the failure itself (in its own words).
        """
        state = self.tasks[name]
        state.runs += 1
        state.failures += 1
        state.consecutive_failures += 1
        state.last_failure = self.clock()
        state.last_error = f"{type(exc).__name__}: {exc}"[:500]
        extra = {"task": name, "error": state.last_error, "failures": state.consecutive_failures}
        if logged:
            pass
        elif isinstance(exc, StorageUnavailable):
            log.warning("background task failed: storage unavailable", extra=extra)
        elif state.consecutive_failures == 1 or state.consecutive_failures % 20 == 0:
            log.error("background task failed", exc_info=exc, extra=extra)
        else:
            log.warning("background task failed again", extra=extra)
        exponent = min(state.consecutive_failures - 1, 16)
        return float(min(state.max_backoff, self.min_backoff * 2**exponent))

    def unhealthy(self) -> list[str]:
        """Critical tasks that keep failing."""
        now = self.clock()
        return [n for n, s in self.tasks.items() if not s.healthy(now, self.stale_after)]

    def describe(self) -> dict[str, dict[str, Any]]:
        """Every task for /readyz?verbose."""
        return {name: state.describe() for name, state in sorted(self.tasks.items())}

    # ------------------------------------------------------------------ loops
    async def loop(
        self,
        name: str,
        step: Step,
        interval: float,
        *,
        wait: Step | None = None,
    ) -> None:
        """Call ``step`` every ``interval`` seconds until cancelled, whatever it raises."""
        if wait is not None:
            await wait()
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await asyncio.sleep(min(self.failed(name, exc), max(interval, self.min_backoff)))
                continue
            self.succeeded(name)
            await asyncio.sleep(interval)

    async def keep_running(
        self, name: str, run: Step, *, wait: Step | None = None, until_done: bool = False
    ) -> None:
        """Run a long-lived ``run`` until cancelled, restarting it after any failure (and
        after it ends, unless ``until_done``: then ending is its success).

        Such a task reports its own progress with ``succeeded(name)``.
        """
        if wait is not None:
            await wait()
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.failed(name, exc)
            else:
                if until_done:
                    self.succeeded(name)
                    return
                delay = self.failed(name, RuntimeError("the task ended; restarting it"))
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ lifetimes
    def periodic(
        self,
        name: str,
        step: Callable[[web.Application], Awaitable[Any]],
        interval: Callable[[web.Application], float],
        *,
        critical: bool = False,
        wait: Callable[[web.Application], Awaitable[Any]] | None = None,
    ) -> CleanupCtx:
        """A cleanup context running ``step(app)`` every ``interval(app)`` seconds."""
        self.register(name, critical=critical)

        def factory(app: web.Application) -> Awaitable[None]:
            return self.loop(
                name,
                lambda: step(app),
                interval(app),
                wait=(lambda: wait(app)) if wait is not None else None,
            )

        return self._lifetime(name, factory)

    def service(
        self,
        name: str,
        run: Callable[[web.Application], Awaitable[Any]],
        *,
        critical: bool = False,
        wait: Callable[[web.Application], Awaitable[Any]] | None = None,
        max_backoff: float | None = None,
        until_done: bool = False,
    ) -> CleanupCtx:
        """A cleanup context keeping ``run(app)`` running for the app's lifetime (or, with
        ``until_done``, until it once ends without failing)."""
        self.register(name, critical=critical, max_backoff=max_backoff)

        def factory(app: web.Application) -> Awaitable[None]:
            return self.keep_running(
                name,
                lambda: run(app),
                wait=(lambda: wait(app)) if wait is not None else None,
                until_done=until_done,
            )

        return self._lifetime(name, factory)

    def _lifetime(
        self, name: str, factory: Callable[[web.Application], Awaitable[None]]
    ) -> CleanupCtx:
        async def ctx(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.ensure_future(factory(app))
            task.set_name(name)
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return ctx

    # ------------------------------------------------------------------ metrics
    def collect(self) -> Iterator[Metric]:
        """Failures and last successes of every task."""
        failures = CounterMetricFamily(
            "monitoring_background_task_failures",
            "Failed runs of a background task; it is retried with backoff.",
            labels=["task"],
        )
        success = GaugeMetricFamily(
            "monitoring_background_task_last_success_timestamp_seconds",
            "When a background task last succeeded (Unix time).",
            labels=["task"],
        )
        for name, state in sorted(self.tasks.items()):
            failures.add_metric([name], state.failures)
            if state.last_success is not None:
                success.add_metric([name], state.last_success)
        yield failures
        yield success
