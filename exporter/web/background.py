"""Background tasks as cleanup_ctx lifetimes: started with the app, cancelled with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

TaskFactory = Callable[[web.Application], Coroutine[Any, Any, None]]
CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def background(name: str, factory: TaskFactory) -> CleanupCtx:
    """A cleanup context that keeps one task running for the app's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_guard(name, factory(app)), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


async def _guard(name: str, coro: Coroutine[Any, Any, None]) -> None:
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background task failed", extra={"task": name})
