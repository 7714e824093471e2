"""GET /metrics."""

from __future__ import annotations

from aiohttp import web

from exporter.features.core import EXPOSITION


async def metrics(request: web.Request) -> web.Response:
    """Render every collector's current state in the format the scraper asked for."""
    body, headers = await request.app[EXPOSITION].render_async(
        request.headers.get("Accept"), request.headers.get("Accept-Encoding")
    )
    return web.Response(body=body, headers=headers)


def setup(app: web.Application) -> None:
    """Add the /metrics route."""
    app.router.add_get("/metrics", metrics)
