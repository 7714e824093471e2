"""Running the service: the database to use, the listener, signals and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from exporter import selftest
from exporter.banner import Announcement, split_listen_address, where
from exporter.config import Config
from exporter.features.core import DATABASE, EXPOSITION, LIFECYCLE, LISTENER, replica_name
from exporter.log import BANNER
from exporter.storage import Database
from exporter.storage import selftest as selftest_storage
from exporter.storage.embedded import EmbeddedPostgres
from exporter.web.app import create_app

log = logging.getLogger(__name__)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (it serves aiohttp and asyncpg faster)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_main(main: Coroutine[Any, Any, int]) -> int:
    """Run the service's top coroutine on the fastest available event loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


class ListenError(Exception):
    """The listen address cannot be used; the message says why and how to choose another."""


def listen_error(address: str, exc: OSError) -> ListenError:
    """The one line an operator needs when the service cannot listen."""
    _, port = split_listen_address(address)
    if exc.errno == errno.EADDRINUSE:
        reason = f"port {port} is already in use"
    else:
        reason = exc.strerror or str(exc)
    return ListenError(
        f"cannot listen on {address}: {reason}; choose another address with "
        "--web.listen-address HOST:PORT"
    )


def check_listen_address(address: str) -> None:
    """Bind the address once and let go, so a taken port is reported before anything starts.

    Bound as aiohttp will (every address the host resolves to, SO_REUSEADDR), so only a
    port somebody listens on fails, not one in TIME_WAIT.
    """
    host, port = split_listen_address(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, sockaddr in infos:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind(sockaddr)
                except OSError as exc:
                    # an address family the host lacks, which asyncio's create_server skips
                    if exc.errno != errno.EADDRNOTAVAIL:
                        raise
    except socket.gaierror as exc:
        raise ListenError(
            f"cannot listen on {address}: unknown host ({exc.strerror}); choose another "
            "address with --web.listen-address HOST:PORT"
        ) from exc
    except OSError as exc:
        raise listen_error(address, exc) from exc


async def announce_when_ready(app: web.Application, announcement: Announcement) -> None:
    """Log the banner once /readyz would say 200: database migrated, listener connected."""
    await app[DATABASE].wait_ready()
    await app[LISTENER].wait_connected()
    log.info("ready", extra={BANNER: announcement.lines(), **announcement.fields()})


def with_database(dsn: str | None, data_dir: Path, run: Callable[[str], int]) -> int:
    """Call ``run(dsn)`` with the given database, or with an embedded one started for it."""
    if dsn:
        return run(dsn)
    embedded = EmbeddedPostgres(data_dir)
    url = embedded.start()
    try:
        return run(url)
    finally:
        embedded.stop()


def settle_heap() -> None:
    """Leave what start-up built (modules, routes, registries) out of the cyclic GC.

    Those objects live as long as the process; left in, every full collection walks them all
    again, a pause of tens of milliseconds that showed in webhook p99.
    """
    gc.collect()
    gc.freeze()


# After the drain deadline the database pool is terminated and the requests still waiting on
# it fail with 503; they get this long to send that answer before aiohttp, at the end of its
# own patience, cancels them (a cancelled request gets no answer at all).
ANSWER_GRACE = 2.0
# Past this much more, shutdown stops waiting for anything: the process exits regardless.
OVERRUN = 1.5


async def serve(
    config: Config, dsn: str, listen_address: str, announcement: Announcement | None = None
) -> int:
    """Serve until SIGTERM or SIGINT, then drain: readiness 503, finish writes, close, exit 0.

    The drain has one deadline, ``web.shutdown_timeout`` after the signal: writes that cannot
    commit by then are answered 503. Exit 1 when the database is newer than this code, or
    with one log line when the address cannot be listened on.
    """
    app = create_app(config, dsn=dsn, replica=replica_name(config, listen_address))
    drain = config.web.shutdown_timeout.seconds
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=drain + ANSWER_GRACE,
        access_log=None,
    )
    await runner.setup()
    settle_heap()
    host, port = split_listen_address(listen_address)
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:  # taken between the check and now
        log.error(str(listen_error(listen_address, exc)))
        await runner.cleanup()
        return 1
    app[LIFECYCLE].serving.set()
    log.info(
        "listening",
        extra={
            "address": listen_address,
            "event_loop": type(asyncio.get_running_loop()).__module__,
        },
    )

    db = app[DATABASE]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    announcing = asyncio.create_task(
        announce_when_ready(app, announcement or Announcement(listen_address, where(dsn)))
    )
    try:
        await first_of(stop, db.refused)
    finally:
        announcing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await announcing
        log.info("shutting down")
        app[LIFECYCLE].draining = True
        db.drain_by(loop.time() + drain)
        # cleanup stops the listener, waits for in-flight requests (their writes commit, or
        # fail at the drain deadline), closes WebSockets in on_shutdown, then runs the
        # cleanup_ctx lifetimes in reverse
        try:
            async with asyncio.timeout(drain + ANSWER_GRACE + OVERRUN):
                await runner.cleanup()
        except TimeoutError:
            log.error("shutdown overran its deadline; exiting anyway")
        log.info("stopped")
    if db.refusal is not None:
        print(f"monitoring-exporter: {db.refusal}", file=sys.stderr)
        return 1
    return 0


async def first_of(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def selftest_command(config: Config, dsn: str) -> int:
    """``monitoring-exporter selftest``: print each step with its time; 1 when one failed.

    /metrics is rendered by the collectors this configuration sets up (an app that is built
    but not started: no probe runs, nothing is written).
    """
    db = Database(dsn, config.database)
    app = create_app(config, dsn=dsn)
    timeout = config.database.connect_timeout.seconds
    print(f"selftest of {where(dsn)}, schema {config.database.schema!r}", flush=True)
    report = await selftest.run(
        db,
        lambda: selftest_storage.connect(dsn, timeout),
        lambda: app[EXPOSITION].render(None, None)[0],
        step_timeout=max(timeout, 5.0),
    )
    print("\n".join(report.lines()), flush=True)
    return 0 if report.ok else 1
