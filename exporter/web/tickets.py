"""POST /api/v1/stream/tickets: a short-lived, single-use ticket that opens a stream from a
web page, which cannot set an Authorization header on a WebSocket or an EventSource."""

from __future__ import annotations

from datetime import datetime

import msgspec
from aiohttp import web

from exporter.features.tickets import TICKETS
from exporter.web.api import API, Route
from exporter.web.auth import PRINCIPAL
from exporter.web.payload import json_response


class TicketOut(msgspec.Struct, frozen=True):
    """A ticket: put it in the stream's URL (``?ticket=``) before ``expires_at``; it opens one
    stream, on any replica."""

    ticket: str
    expires_at: datetime


class TicketQuery(msgspec.Struct, frozen=True):
    """The query of a browser route: a ticket instead of an Authorization header."""

    #: from POST /api/v1/stream/tickets; used up by this request
    ticket: str | None = None


async def issue_ticket(request: web.Request) -> web.Response:
    """A ticket for the caller's token, for a web page to open a stream with (``?ticket=``)."""
    principal = request[PRINCIPAL]
    issued = await request.app[TICKETS].issue(principal.name, principal.scopes)
    return json_response(TicketOut(issued.ticket, issued.expires_at), status=201)


def setup(app: web.Application) -> None:
    """Register the tickets route (its state is in features.tickets)."""
    app[API].add(
        app,
        Route(
            "POST",
            "/api/v1/stream/tickets",
            issue_ticket,
            "A single-use ticket that opens a stream from a web page",
            "read",
            response=TicketOut,
            status=201,
            tags=("stream",),
            browser=True,
        ),
    )
