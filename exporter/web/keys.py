"""Typed keys for the state kept on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from exporter.config import Config
from exporter.exposition.registry import Exposition
from exporter.exposition.self_metrics import SelfMetrics
from exporter.storage import Database, Listener
from exporter.web.api import Api


@dataclass
class Lifecycle:
    """Whether the service is shutting down (readiness answers 503 from then on)."""

    draining: bool = False


CONFIG = web.AppKey("config", Config)
DATABASE = web.AppKey("database", Database)
LISTENER = web.AppKey("listener", Listener)
EXPOSITION = web.AppKey("exposition", Exposition)
SELF_METRICS = web.AppKey("self_metrics", SelfMetrics)
API = web.AppKey("api", Api)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
