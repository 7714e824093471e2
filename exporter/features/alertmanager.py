"""The bridge's side of Alertmanager: reconciliation, acknowledgement silences, the alerts we
send, and retries of whatever failed.

Every call to Alertmanager happens here, from a leader job or right after the request that
made it necessary (an acknowledgement wants its silence at once). The local change always
commits first; what the call did is stored afterwards, and what it could not do stays
pending in the incident's columns (``domain.alertmanager.pending``) until the
``alertmanager:sync`` job manages it. Failures are counted in
``monitoring_alertmanager_sync_failures_total{operation}`` and shown on the incident.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from exporter.domain import alertmanager as am
from exporter.exposition.alerts import AlertmanagerMetrics
from exporter.features.core import CONFIG, DATABASE, EXPOSITION, LEADERSHIP
from exporter.features.leader import Job, Run
from exporter.outputs.alertmanager import AlertmanagerError, Alertmanagers, PostableAlert
from exporter.storage import StorageUnavailable
from exporter.storage import alertmanager as storage
from exporter.storage.alertmanager import Results

log = logging.getLogger(__name__)

#: pending incidents handled per pass of the sync job
SYNC_BATCH = 500
#: calls to Alertmanager in flight at once
CONCURRENCY = 8


#: the least time between two log lines about failing calls of one kind
LOG_EVERY = 60.0


@dataclass
class Link:
    """This replica's link to Alertmanager (``client`` is None when none is configured)."""

    metrics: AlertmanagerMetrics = field(default_factory=AlertmanagerMetrics)
    client: Alertmanagers | None = None
    #: alert names that are heartbeats (the Watchdog): never incidents
    heartbeat_alertnames: frozenset[str] = frozenset()
    _logged: dict[str, float] = field(default_factory=dict)

    def failed(self, operation: str, error: str, **context: Any) -> None:
        """Count one failed call (the work stays pending); log it, once a minute per kind
        (an Alertmanager that is down fails every pending call of every pass)."""
        self.metrics.sync_failures.labels(operation).inc()
        at = time.monotonic()
        if at - self._logged.get(operation, -LOG_EVERY) < LOG_EVERY:
            return
        self._logged[operation] = at
        log.warning(
            "Alertmanager call failed, left pending for a retry",
            extra={"operation": operation, "error": error[:500], **context},
        )


ALERTMANAGER = web.AppKey("alertmanager", Link)


def configured(app: web.Application) -> bool:
    """Whether an Alertmanager is configured."""
    return bool(app[CONFIG].alerts.urls)


def now() -> datetime:
    """The time calls are stamped with (ends of silences, sends)."""
    return datetime.now(UTC)


# ---------------------------------------------------------------- calls for incidents
def _postable(row: dict[str, Any], at: datetime, hold: timedelta) -> PostableAlert:
    """An incident as the alert we send (firing until ``at + hold``, else its end)."""
    labels = am.outgoing_labels(
        row["fingerprint"], row["title"], row["severity"], row["alert_type"],
        row["service_name"], row["labels"] or {},
    )  # fmt: skip
    annotations = {"summary": row["title"]}
    if row["description"]:
        annotations["description"] = row["description"]
    resolved = row["status"] == "resolved"
    ends = max(row["resolved_at"], row["starts_at"]) if resolved else at + hold
    return PostableAlert(labels, annotations, row["starts_at"], ends)


def hold(app: web.Application) -> timedelta:
    """How long an alert we send stays firing in Alertmanager without being sent again
    (re-sent every reconciliation; four passes, as Prometheus does with its resends)."""
    return timedelta(seconds=max(4 * app[CONFIG].alerts.reconcile_interval.seconds, 60.0))


async def _work(app: web.Application, rows: Sequence[dict[str, Any]]) -> Results:
    """Do the Alertmanager work these incidents wait for; what happened, to be stored."""
    link, alerts = app[ALERTMANAGER], app[CONFIG].alerts
    client = link.client
    results = Results.empty()
    if client is None:
        return results
    started = now()
    length = timedelta(seconds=alerts.ack_silence_duration.seconds)
    gate = asyncio.Semaphore(CONCURRENCY)
    outgoing: list[dict[str, Any]] = []

    async def silence(row: dict[str, Any]) -> None:
        ends = am.silence_end(started, length, row["acknowledged_until"])
        if ends <= started:
            return  # the acknowledgement ends now: nothing to silence
        matchers = am.silence_matchers(row["source"], row["fingerprint"], row["labels"] or {})
        comment = f"Acknowledged in monitoring-exporter (alert {row['id']}: {row['title']})"
        async with gate:
            try:
                made = await client.create_silence(
                    matchers, started, ends, row["acknowledged_by"] or "monitoring-exporter",
                    comment[:1000],
                )  # fmt: skip
            except AlertmanagerError as exc:
                link.metrics.silences.labels("create", "error").inc()
                link.failed("create_silence", str(exc), alert_id=row["id"])
                results.failed.append((row["id"], f"create_silence: {exc}"))
                return
        link.metrics.silences.labels("create", "ok").inc()
        results.silenced.append((row["id"], made, ends, row["silence_id"]))

    async def expire(row: dict[str, Any]) -> None:
        async with gate:
            try:
                await client.expire_silence(row["silence_id"])
            except AlertmanagerError as exc:
                link.metrics.silences.labels("expire", "error").inc()
                link.failed("expire_silence", str(exc), alert_id=row["id"])
                results.failed.append((row["id"], f"expire_silence: {exc}"))
                return
        link.metrics.silences.labels("expire", "ok").inc()
        results.expired.append((row["id"], row["silence_id"]))

    calls: list[Awaitable[None]] = []
    for row in rows:
        for operation in am.pending(row, started, configured=True):
            if operation == "silence":
                calls.append(silence(row))
            elif operation == "expire_silence":
                calls.append(expire(row))
            else:
                outgoing.append(row)
    if outgoing:
        calls.append(_send(app, outgoing, started, results))
    await asyncio.gather(*calls)
    return results


async def _send(
    app: web.Application, rows: Sequence[dict[str, Any]], at: datetime, results: Results
) -> None:
    """Send alerts to every Alertmanager: all in one request, and one by one when that one is
    refused (so an alert Alertmanager will not take holds no other back)."""
    link = app[ALERTMANAGER]
    assert link.client is not None
    span = hold(app)
    errors = await link.client.post_alerts([_postable(r, at, span) for r in rows])
    if not errors:
        results.sent += [(r["id"], at) for r in rows]
        return
    if len(rows) == 1:
        link.failed("send_alerts", "; ".join(errors), alert_id=rows[0]["id"])
        results.failed.append((rows[0]["id"], "send_alerts: " + "; ".join(errors)))
        return
    await asyncio.gather(*(_send(app, [row], at, results) for row in rows))


async def _expire_unwanted(app: web.Application, silences: Sequence[tuple[str, datetime]]) -> None:
    """Expire silences made for incidents that no longer wanted them (a race lost)."""
    client = app[ALERTMANAGER].client
    for silence_id, _ends in silences:
        if client is None:
            return
        try:
            await client.expire_silence(silence_id)
        except AlertmanagerError as exc:
            app[ALERTMANAGER].failed("expire_silence", str(exc), silence_id=silence_id)


async def after_change(app: web.Application, ids: Sequence[int]) -> None:
    """Do at once the Alertmanager work of incidents a request (or job) just changed; what
    fails stays pending for the sync job. Never raises: the change is committed already."""
    if app[ALERTMANAGER].client is None or not ids:
        return
    db = app[DATABASE]
    try:
        rows = await storage.by_ids(db, ids)
        results = await _work(app, rows)
        async with db.transaction() as conn:
            unwanted = await storage.store(conn, db, results)
        await _expire_unwanted(app, unwanted)
    except StorageUnavailable as exc:
        log.warning("could not record Alertmanager work", extra={"error": str(exc)})
    except Exception:  # the change is committed: what failed stays pending for the sync job
        log.exception("Alertmanager work after a change failed")


# ---------------------------------------------------------------- scheduled work
async def _sync(app: web.Application, run: Run) -> None:
    """Retry the Alertmanager work left pending."""
    db, alerts = app[DATABASE], app[CONFIG].alerts
    rows = await storage.pending(db, SYNC_BATCH, alerts.request_timeout.seconds + 1)
    if not rows:
        return
    results = await _work(app, rows)
    async with run.commit() as conn:
        unwanted = await storage.store(conn, db, results)
    await _expire_unwanted(app, unwanted)


async def reconcile(app: web.Application, run: Run) -> None:
    """Compare the incidents with every Alertmanager's alerts; extend the silences of
    acknowledgements whose alerts still fire; send our open alerts again."""
    link, db, alerts = app[ALERTMANAGER], app[DATABASE], app[CONFIG].alerts
    client = link.client
    assert client is not None
    read_at = now()
    listings = await client.list_alerts()
    answered = [listing for listing in listings if listing.alerts is not None]
    for listing in listings:
        if listing.error is not None:
            link.failed("list_alerts", listing.error, alertmanager=listing.url)
    if not answered:
        raise AlertmanagerError("no Alertmanager answered: " + "; ".join(
            listing.error or "" for listing in listings))  # fmt: skip
    grace = timedelta(seconds=alerts.reconcile_startup_grace.seconds)
    # resolving needs every member's word, each up long enough to have heard from Prometheus
    resolve = len(answered) == len(listings) and all(
        listing.up_since is not None and read_at - listing.up_since >= grace for listing in answered
    )
    firing = []
    for alert in am.merge(listing.alerts or [] for listing in answered):
        if alert.labels.get("alertname") in link.heartbeat_alertnames:
            continue  # a heartbeat's beat (the Watchdog), never an incident
        problem = am.unstorable(alert)
        if problem is not None:
            link.failed("list_alerts", f"alert {alert.fingerprint} skipped: {problem}")
            continue
        firing.append(alert)
    async with run.commit() as conn:
        done = await storage.reconcile(conn, db, firing, resolve, read_at)
    await after_change(app, done.silenced)
    for change, n in (("opened", done.opened), ("resolved", done.resolved),
                      ("updated", done.updated)):  # fmt: skip
        link.metrics.reconciled.labels(change).inc(n)
    if done.opened or done.resolved:
        log.info(
            "reconciled incidents with Alertmanager",
            extra={"opened": done.opened, "resolved": done.resolved},
        )
    keys = {alert.key for alert in firing}
    await _extend(app, run, keys)
    await _resend(app, run)
    await _sync(app, run)


async def _extend(app: web.Application, run: Run, firing: set[tuple[str, datetime]]) -> None:
    """Extend the silences of acknowledgements whose alert still fires, once less than half
    their length remains."""
    link, db, alerts = app[ALERTMANAGER], app[DATABASE], app[CONFIG].alerts
    client = link.client
    assert client is not None
    length = timedelta(seconds=alerts.ack_silence_duration.seconds)
    started = now()
    rows = await storage.expiring_silences(db, length.total_seconds() / 2)
    results = Results.empty()
    for row in rows:
        still = row["source"] != "alertmanager" or (row["fingerprint"], row["starts_at"]) in firing
        if not still or not am.needs_extension(
            row["silence_ends_at"], started, length, row["acknowledged_until"]
        ):
            continue
        ends = am.silence_end(started, length, row["acknowledged_until"])
        matchers = am.silence_matchers(row["source"], row["fingerprint"], row["labels"] or {})
        comment = f"Acknowledged in monitoring-exporter (alert {row['id']}: {row['title']})"
        try:
            made = await client.create_silence(
                matchers, started, ends, row["acknowledged_by"] or "monitoring-exporter",
                comment[:1000], row["silence_id"],
            )  # fmt: skip
        except AlertmanagerError as exc:
            link.failed("extend_silence", str(exc), alert_id=row["id"])
            results.failed.append((row["id"], f"extend_silence: {exc}"))
            continue
        link.metrics.silences.labels("extend", "ok").inc()
        results.silenced.append((row["id"], made, ends, row["silence_id"]))
    if results.silenced or results.failed:
        async with run.commit() as conn:
            unwanted = await storage.store(conn, db, results)
        await _expire_unwanted(app, unwanted)


async def _resend(app: web.Application, run: Run) -> None:
    """Send our open alerts again, so Alertmanager keeps them (and a restarted one has them)."""
    db = app[DATABASE]
    rows = await storage.open_outgoing(db)
    if not rows:
        return
    results = Results.empty()
    await _send(app, rows, now(), results)
    # a send is recorded once (sent_at); a repeat that worked only clears an old error
    ok = {i for i, _ in results.sent}
    first = {r["id"] for r in rows if r["sent_at"] is None}
    results.cleared = [r["id"] for r in rows if r["alertmanager_error"] and r["id"] in ok - first]
    results.sent = [(i, at) for i, at in results.sent if i in first]
    if results.sent or results.failed or results.cleared:
        async with run.commit() as conn:
            await storage.store(conn, db, results)


# ---------------------------------------------------------------- lifetime
async def _client(app: web.Application) -> AsyncIterator[None]:
    """An Alertmanager API client for the app's lifetime, when Alertmanagers are configured."""
    urls = app[CONFIG].alerts.urls
    if not urls:
        yield
        return
    async with aiohttp.ClientSession() as session:
        app[ALERTMANAGER].client = Alertmanagers(
            session, urls, app[CONFIG].alerts.request_timeout.seconds
        )
        yield
        app[ALERTMANAGER].client = None


def _job(app: web.Application, name: str, interval: float,
         step: Callable[[web.Application, Run], Awaitable[None]]) -> Job:  # fmt: skip
    async def run(run: Run) -> None:
        if app[ALERTMANAGER].client is not None:
            await step(app, run)

    return Job(name, interval, run)


def setup(app: web.Application) -> None:
    """Install the link, its metrics, its jobs and the client's lifetime."""
    config = app[CONFIG]
    link = app[ALERTMANAGER] = Link(
        heartbeat_alertnames=frozenset(
            beat.alertname for beat in config.heartbeats if beat.alertname is not None
        )
    )
    app[EXPOSITION].add("alertmanager", link.metrics.registry)
    if configured(app):
        alerts = config.alerts
        leadership = app[LEADERSHIP]
        leadership.add(
            _job(app, "alertmanager:reconcile", alerts.reconcile_interval.seconds, reconcile)
        )
        leadership.add(_job(app, "alertmanager:sync", alerts.sync_interval.seconds, _sync))
    app.cleanup_ctx.append(_client)
