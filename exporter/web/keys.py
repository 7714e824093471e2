"""Typed keys for the state kept on the aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiohttp import web

from exporter.config import Config
from exporter.exposition.registry import Exposition
from exporter.exposition.self_metrics import SelfMetrics
from exporter.storage import Database, Listener
from exporter.web.api import Api


@dataclass
class Lifecycle:
    """Where the service is in its life: listening yet, or shutting down."""

    #: set by whoever starts the listener (the service, the test server) once it listens
    serving: asyncio.Event = field(default_factory=asyncio.Event)
    #: readiness answers 503 from then on
    draining: bool = False

    async def wait_serving(self, timeout: float) -> None:
        """Wait until the listener is up, or ``timeout`` seconds for embedders that never say."""
        # asyncio.timeout: 3.11's wait_for can swallow a cancellation (see alert_bridge)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.serving.wait()


CONFIG = web.AppKey("config", Config)
DATABASE = web.AppKey("database", Database)
LISTENER = web.AppKey("listener", Listener)
EXPOSITION = web.AppKey("exposition", Exposition)
SELF_METRICS = web.AppKey("self_metrics", SelfMetrics)
API = web.AppKey("api", Api)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
