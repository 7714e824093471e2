"""Stream tickets: what a browser presents instead of a bearer token to open a stream.

A ticket is random (``secrets.token_urlsafe``), lives ``web.stream_ticket_ttl`` and opens one
stream once. Tickets are kept in PostgreSQL (``storage.tickets``), so any replica redeems
what another issued; nothing is held in memory.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from exporter.features.core import CONFIG, DATABASE
from exporter.storage import Database
from exporter.storage import tickets as storage
from exporter.storage.tickets import TicketHolder

#: longer presented values are refused without a query (issued tickets are 43 characters)
MAX_TICKET_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Issued:
    """A new ticket and when it stops working."""

    ticket: str
    expires_at: datetime


@dataclass(frozen=True)
class Tickets:
    """Issues and redeems tickets against the shared table."""

    db: Database
    ttl_seconds: float

    async def issue(self, token_name: str, scopes: frozenset[str]) -> Issued:
        """A new single-use ticket carrying the token's name and scopes."""
        ticket = secrets.token_urlsafe(32)
        holder = TicketHolder(token_name, tuple(sorted(scopes)))
        return Issued(ticket, await storage.issue(self.db, ticket, holder, self.ttl_seconds))

    async def redeem(self, ticket: str) -> TicketHolder | None:
        """Consume a ticket: whom it was issued to, or None (unknown, used or expired)."""
        if not ticket or len(ticket) > MAX_TICKET_LENGTH:
            return None
        return await storage.redeem(self.db, ticket)


TICKETS = web.AppKey("stream_tickets", Tickets)


def setup(app: web.Application) -> None:
    """Install the ticket office (its table is pruned as tickets are issued)."""
    app[TICKETS] = Tickets(app[DATABASE], app[CONFIG].web.stream_ticket_ttl.seconds)
