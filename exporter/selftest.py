"""The self-test (``monitoring-exporter selftest``, ``GET /api/v1/selftest``).

Writes one of each record the service stores -- a health metric, a quality indicator, an
alert taken through create, acknowledge and resolve, a performance log -- inside one
transaction that is rolled back, then checks a NOTIFY round trip and a /metrics render. Each
step is timed; the first that fails ends the test and is named. It proves what a deployment
needs: the login reaches the database, the schema is migrated, the role may write every
table, LISTEN/NOTIFY works on that connection path (a transaction pooler breaks it), and the
exposition renders.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from exporter.domain import alert as lifecycle
from exporter.domain.health_rules import RuleBook
from exporter.domain.health_series import Sample
from exporter.storage import Database
from exporter.storage import alerts as alerts_storage
from exporter.storage import health as health_storage
from exporter.storage import quality as quality_storage
from exporter.storage import selftest as storage
from exporter.storage.performance_logs import Rows

T = TypeVar("T")
ACTOR = "selftest"
#: the steps, in order
STEPS = (
    "database",
    "schema",
    "health_metric",
    "quality_indicator",
    "alert_create",
    "alert_acknowledge",
    "alert_resolve",
    "performance_log",
    "rollback",
    "notify",
    "metrics",
)


@dataclass(frozen=True)
class Step:
    """One step's outcome."""

    name: str
    ok: bool
    seconds: float
    error: str | None = None

    def describe(self) -> str:
        """``ok in 1.2 ms`` or ``failed after 5000.0 ms: why``."""
        took = f"{self.seconds * 1000:.1f} ms"
        return f"ok in {took}" if self.ok else f"failed after {took}: {self.error}"


@dataclass(frozen=True)
class Report:
    """Every step that ran; the test stops at the first failure."""

    steps: tuple[Step, ...]

    @property
    def failed(self) -> Step | None:
        """The step that failed, if one did."""
        return next((s for s in self.steps if not s.ok), None)

    @property
    def ok(self) -> bool:
        """Whether every step ran and passed."""
        return self.failed is None and len(self.steps) == len(STEPS)

    @property
    def seconds(self) -> float:
        """The time of all steps."""
        return sum(s.seconds for s in self.steps)

    def lines(self) -> list[str]:
        """The report for a terminal."""
        out = [
            f"{'ok' if s.ok else 'FAILED':<7} {s.name:<18} {s.seconds * 1000:9.1f} ms"
            + (f"  {s.error}" if s.error else "")
            for s in self.steps
        ]
        failed = self.failed
        if failed is None:
            out.append(f"selftest passed: {len(self.steps)} steps in {self.seconds * 1000:.1f} ms")
        else:
            out.append(f"selftest failed at step {failed.name}")
        return out


class Failure(Exception):
    """A step found something wrong (its message is the whole story)."""


class _Stop(Exception):
    """A step failed; the rest do not run."""


class _Steps:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.done: list[Step] = []

    async def __call__(self, name: str, work: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                result = await work()
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                error = f"no answer within {self.timeout:g} s"
            elif isinstance(exc, Failure):
                error = str(exc)
            else:
                error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            self.done.append(Step(name, False, time.perf_counter() - started, error))
            raise _Stop from exc
        self.done.append(Step(name, True, time.perf_counter() - started))
        return result


async def run(
    db: Database,
    connect: Callable[[], AbstractAsyncContextManager[Any]],
    render: Callable[[], bytes],
    *,
    step_timeout: float = 5.0,
) -> Report:
    """Run every step against ``db`` on a connection from ``connect``; ``render`` is /metrics."""
    steps = _Steps(step_timeout)
    try:
        async with AsyncExitStack() as stack:

            async def open_connection() -> Any:
                conn = await stack.enter_async_context(connect())
                await storage.ping(conn)
                return conn

            conn = await steps("database", open_connection)
            await steps("schema", lambda: _migrated(conn, db.schema))
            async with storage.RolledBack(db, conn) as transaction:
                alert_id = await _writes(steps, transaction.db, conn)

                async def rollback() -> None:
                    await transaction.rollback()
                    if await storage.alert_exists(conn, db.schema, alert_id):
                        raise Failure(f"alert {alert_id} is still there after rollback")

                await steps("rollback", rollback)
            await steps("notify", lambda: storage.notify_round_trip(db.dsn, conn, step_timeout))
        await steps("metrics", lambda: _metrics(render))
    except _Stop:
        pass
    return Report(tuple(steps.done))


async def _migrated(conn: Any, schema: str) -> None:
    versions = await storage.pending_versions(conn, schema)
    if versions:
        raise Failure(
            f"migrations {', '.join(map(str, versions))} are not applied to schema {schema!r}: "
            "run `monitoring-exporter migrate`"
        )


async def _writes(steps: _Steps, pinned: Database, conn: Any) -> int:
    """The writes, through ``pinned`` (one connection, inside the rolled-back transaction)."""
    now = datetime.now(UTC)
    schema = pinned.schema

    async def health() -> None:
        sample = Sample("selftest", "selftest", 1.0, "", "push", now, {"selftest": True})
        await health_storage.store_samples(
            conn, pinned, [[sample]], RuleBook(), cap=None, expires=lambda _s: now
        )

    async def quality() -> None:
        row = quality_storage.NewIndicator(
            "selftest", "selftest", "completeness", 100.0, 1, 1, "healthy", 99.0, 95.0,
            None, "[]", None,
        )  # fmt: skip
        await quality_storage.insert(conn, pinned, [row])

    async def create() -> int:
        row, _ = await alerts_storage.create_alert(
            pinned,
            f"selftest-{uuid.uuid4().hex}",
            ("system_error", "low", "monitoring-exporter self-test", None, None, "{}"),
            None,
            ACTOR,
        )
        alert_id: int = row["id"]
        return alert_id

    def change(
        alert_id: int, operation: Callable[[lifecycle.Incident], lifecycle.Transition]
    ) -> Callable[[], Awaitable[None]]:
        async def apply() -> None:
            found = await alerts_storage.change_alert(pinned, alert_id, operation)
            if found is None:
                raise Failure(f"alert {alert_id} vanished")
            row, transition = found
            if row["status"] != transition.incident.status:
                raise Failure(f"alert {alert_id} is {row['status']}")

        return apply

    async def performance_log() -> None:
        rows = Rows(
            ["selftest"], ["selftest"], [1.0], [None], [None], ["success"], [None], [None],
            [None], [None],
        )  # fmt: skip
        await storage.insert_performance_log(conn, schema, rows)

    await steps("health_metric", health)
    await steps("quality_indicator", quality)
    alert_id = await steps("alert_create", create)
    await steps(
        "alert_acknowledge",
        change(alert_id, lambda i: lifecycle.acknowledge(i, ACTOR, now)),
    )
    await steps("alert_resolve", change(alert_id, lambda i: lifecycle.resolve(i, ACTOR, None, now)))
    await steps("performance_log", performance_log)
    return alert_id


async def _metrics(render: Callable[[], bytes]) -> None:
    text = render().decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    if "monitoring_collector_success" not in families:
        raise Failure("the exposition lacks monitoring_collector_success")
