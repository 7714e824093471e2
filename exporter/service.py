"""Running the service: the database to use, the listener, signals and a graceful stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from exporter.config import Config
from exporter.features.core import DATABASE, LIFECYCLE, replica_name
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


def split_listen_address(address: str) -> tuple[str | None, int]:
    """``HOST:PORT`` or ``:PORT`` into (host or None for all interfaces, port)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    return (host or None), int(port)


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


async def serve(config: Config, dsn: str, listen_address: str) -> int:
    """Serve until SIGTERM or SIGINT, then drain: readiness 503, finish writes, close, exit 0.

    The drain has one deadline, ``web.shutdown_timeout`` after the signal: writes that cannot
    commit by then are answered 503. Exit 1 when the database is newer than this code.
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
    await site.start()
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
    try:
        await first_of(stop, db.refused)
    finally:
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
