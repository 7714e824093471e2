"""Routes of the health feature (being built in its own issue)."""

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this feature's routes, collectors and lifetimes."""
