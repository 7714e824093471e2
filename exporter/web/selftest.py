"""GET /api/v1/selftest (admin): the ``selftest`` command over HTTP, on the service's own pool."""

from __future__ import annotations

import msgspec
from aiohttp import web

from exporter import selftest
from exporter.features.core import DATABASE, EXPOSITION
from exporter.web.api import API, Route
from exporter.web.errors import ApiError, Detail
from exporter.web.payload import json_response


class StepResult(msgspec.Struct, frozen=True):
    """One step of the self-test."""

    name: str
    ok: bool
    seconds: float
    error: str | None = None


class SelftestReport(msgspec.Struct, frozen=True):
    """Every step passed: their names and times."""

    status: str
    seconds: float
    steps: list[StepResult]


async def run_selftest(request: web.Request) -> web.Response:
    """Run the self-test; 200 with each step's time, or 503 naming the step that failed."""
    app = request.app
    db = app[DATABASE]
    report = await selftest.run(db, db.connection, lambda: app[EXPOSITION].render(None, None)[0])
    failed = report.failed
    if failed is not None:
        raise ApiError(
            503,
            "selftest_failed",
            f"the self-test failed at step {failed.name!r}: {failed.error}",
            [Detail(step.name, step.describe()) for step in report.steps],
            headers={"Retry-After": "5"},
        )
    steps = [StepResult(s.name, s.ok, s.seconds, s.error) for s in report.steps]
    return json_response(SelftestReport("ok", report.seconds, steps))


def setup(app: web.Application) -> None:
    """Register the route."""
    app[API].add(
        app,
        Route(
            "GET",
            "/api/v1/selftest",
            run_selftest,
            "Write one of each record in a rolled-back transaction, check NOTIFY and /metrics",
            "admin",
            response=SelftestReport,
            tags=("selftest",),
            responses={503: "a step failed (named in the message; every step in details)"},
        ),
    )
