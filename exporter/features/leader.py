"""Scheduled work that runs once across replicas: one leader, chosen through PostgreSQL.

Every replica keeps a lease session (``storage.lease``); the one holding the lock leads and
runs every scheduled job (probes, quality checks, retention, auto-resolve, calls to
Alertmanager) on its interval. Each run ends in one fenced transaction that stores its results
and when it ran, so a new leader continues the schedule where the last one stopped (no
interval skipped by more than one, none run twice) and a deposed leader cannot commit
anything after its successor took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.features.tasks import Supervisor
from exporter.features.views import View
from exporter.storage import Database
from exporter.storage import runs as run_store
from exporter.storage.lease import LeaseLost, LeaseSession, fence

log = logging.getLogger(__name__)

LEASE = "scheduler"
# tries of a term's setup before the jobs start without it
SETUP_TRIES = 3


@dataclass(frozen=True)
class Job:
    """Work the leader runs every ``interval`` seconds."""

    name: str
    interval: float
    run: Callable[[Run], Awaitable[None]]


class Run:
    """One run of a job: its start, its leader's term, and the fenced commit of its results."""

    def __init__(self, leadership: Leadership, job: Job, epoch: int) -> None:
        self.leadership = leadership
        self.job = job
        self.epoch = epoch
        self.started_at = datetime.now(UTC)
        self.recorded = False

    @contextlib.asynccontextmanager
    async def commit(self) -> AsyncIterator[Any]:
        """A transaction that commits only while this term lasts, and records the run."""
        db = self.leadership.db
        async with db.transaction() as conn:
            await fence(conn, db.schema, LEASE, self.epoch)
            yield conn
            await self._record(conn, None)
        self.recorded = True

    async def fail(self, exc: BaseException) -> None:
        """Record a failed run (fenced; a failure to record is only logged)."""
        db = self.leadership.db
        try:
            async with db.transaction() as conn:
                await fence(conn, db.schema, LEASE, self.epoch)
                await self._record(conn, f"{type(exc).__name__}: {exc}"[:1000])
        except LeaseLost:
            raise
        except Exception as record_exc:
            log.warning(
                "could not record a failed run",
                extra={"job": self.job.name, "error": f"{type(record_exc).__name__}"},
            )

    async def _record(self, conn: Any, error: str | None) -> None:
        leadership = self.leadership
        await run_store.record(
            conn,
            leadership.db,
            self.job.name,
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
            error=error,
            epoch=self.epoch,
            replica=leadership.replica,
        )


class Leadership:
    """This replica's place in the election, and the jobs it runs while it leads."""

    def __init__(
        self,
        db: Database,
        dsn: str,
        replica: str,
        supervisor: Supervisor,
        *,
        connect_timeout: float = 5.0,
        try_every: float = 1.0,
        heartbeat: float = 2.0,
        idle_timeout: float = 10.0,
    ) -> None:
        self.db = db
        self.dsn = dsn
        self.replica = replica
        self.supervisor = supervisor
        self.connect_timeout = connect_timeout
        self.try_every = try_every
        self.heartbeat = heartbeat
        self.idle_timeout = idle_timeout
        self.jobs: list[Job] = []
        self.setups: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        #: the last run of every job, by whichever replica ran it (a view of scheduled_runs)
        self.runs: dict[str, run_store.JobRun] = {}
        self.epoch: int | None = None
        self.since: float | None = None

    @property
    def leading(self) -> bool:
        """Whether this replica runs the scheduled work now."""
        return self.epoch is not None

    def add(self, job: Job) -> None:
        """Schedule a job (before the app starts)."""
        self.supervisor.register(f"job:{job.name}")
        self.jobs.append(job)

    def add_setup(self, name: str, setup: Callable[[], Awaitable[None]]) -> None:
        """Run ``setup`` at the start of every term, before the jobs (it must be idempotent:
        e.g. seeding demo data that the jobs read). A setup that keeps failing is given up
        after a few tries, so it never holds the jobs back."""
        self.supervisor.register(f"setup:{name}")
        self.setups.append((name, setup))

    # ------------------------------------------------------------------ the election
    async def run(self) -> None:
        """Hold or seek the lease until cancelled; raises when the session fails (the
        supervisor then reconnects with backoff)."""
        session = await LeaseSession.open(
            self.dsn,
            self.db.schema,
            timeout=self.connect_timeout,
            idle_timeout=self.idle_timeout,
        )
        ended = asyncio.Event()
        session.on_close(ended.set)
        term: asyncio.Task[None] | None = None
        try:
            while True:
                if term is None:
                    if await session.try_lock(self.connect_timeout):
                        epoch = await session.take_epoch(LEASE, self.replica, self.connect_timeout)
                        self._begin(epoch)
                        term = asyncio.create_task(self._term(epoch), name="leader-term")
                        continue
                    pause = self.try_every
                else:
                    if term.done():
                        raise LeaseLost("the leader's term ended")
                    await session.heartbeat(self.connect_timeout)
                    pause = self.heartbeat
                self.supervisor.succeeded("leader")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await ended.wait()
                if ended.is_set():
                    raise ConnectionError("the lease session ended")
        finally:
            if term is not None:
                term.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await term
            self._end()
            session.close()

    def _begin(self, epoch: int) -> None:
        self.epoch, self.since = epoch, time.time()
        log.info("this replica leads now", extra={"replica": self.replica, "epoch": epoch})

    def _end(self) -> None:
        if self.epoch is not None:
            task = asyncio.current_task()
            stopping = task is not None and task.cancelling() > 0
            # stepping down at shutdown is the plan; losing the lease otherwise is news
            log.log(
                logging.INFO if stopping else logging.WARNING,
                "this replica no longer leads",
                extra={"replica": self.replica, "epoch": self.epoch},
            )
        self.epoch, self.since = None, None

    # ------------------------------------------------------------------ the jobs
    async def _term(self, epoch: int) -> None:
        for name, setup in self.setups:
            for attempt in range(SETUP_TRIES):
                try:
                    await setup()
                except Exception as exc:
                    delay = self.supervisor.failed(f"setup:{name}", exc)
                    if attempt + 1 < SETUP_TRIES:
                        await asyncio.sleep(delay)
                    continue
                self.supervisor.succeeded(f"setup:{name}")
                break
        async with asyncio.TaskGroup() as group:
            for job in self.jobs:
                group.create_task(self._job_loop(job, epoch), name=f"job:{job.name}")

    async def _job_loop(self, job: Job, epoch: int) -> None:
        task = f"job:{job.name}"
        last = await self._last_started(job)
        while True:
            now = time.time()
            due = last + job.interval if last is not None else now
            if due < now - job.interval:
                due = now  # more than one slot missed (no leader for a while): no burst
            await asyncio.sleep(max(0.0, due - now))
            run = Run(self, job, epoch)
            try:
                await job.run(run)
                if not run.recorded:
                    async with run.commit():
                        pass
            except (LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:
                # a job fails for outside reasons (a source down, a slow peer): a warning
                log.warning(
                    "scheduled job failed",
                    extra={"job": job.name, "error": f"{type(exc).__name__}: {exc}"[:500]},
                )
                self.supervisor.failed(task, exc, logged=True)
                await run.fail(exc)
            else:
                self.supervisor.succeeded(task)
            last = run.started_at.timestamp()

    async def _last_started(self, job: Job) -> float | None:
        task = f"job:{job.name}"
        while True:
            try:
                at = await run_store.last_started(self.db, job.name)
            except Exception as exc:
                await asyncio.sleep(self.supervisor.failed(task, exc))
                continue
            return None if at is None else at.timestamp()

    def view(self) -> View:
        """The view of scheduled_runs that keeps ``runs`` current."""

        async def reload() -> None:
            self.runs = {r.job: r for r in await run_store.all_runs(self.db)}

        return View("scheduled_runs", ("scheduled_runs",), reload)

    # ------------------------------------------------------------------ reporting
    def describe(self) -> dict[str, Any]:
        """The role for /readyz?verbose."""
        return {
            "role": "leader" if self.leading else "follower",
            "replica": self.replica,
            "epoch": self.epoch,
            "since": self.since,
        }

    def collect(self) -> Iterator[Metric]:
        """``monitoring_leader``: 1 on the replica that runs scheduled work."""
        yield GaugeMetricFamily(
            "monitoring_leader",
            "1 on the replica that runs scheduled work (probes, checks, retention), else 0.",
            1.0 if self.leading else 0.0,
        )
