"""stream_tickets: short-lived, single-use tickets that open a stream without a bearer header.

Only a SHA-256 of each ticket is stored. Times are the database's (``now()``), so replicas
with skewed clocks agree on when a ticket expires.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from exporter.storage.database import Database

# Issuing prunes what expired (a data-modifying CTE runs whether or not it is referenced), so
# the table holds at most the tickets of the last TTL.
ISSUE = """
WITH pruned AS (DELETE FROM __SCHEMA__.stream_tickets WHERE expires_at <= now())
INSERT INTO __SCHEMA__.stream_tickets (ticket_hash, token_name, scopes, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
RETURNING expires_at
"""

# One statement claims the ticket: of two concurrent redemptions one deletes the row and the
# other finds nothing. An expired ticket is deleted too, and refused.
REDEEM = """
DELETE FROM __SCHEMA__.stream_tickets WHERE ticket_hash = $1
RETURNING token_name, scopes, expires_at > now() AS valid
"""


@dataclass(frozen=True, slots=True)
class TicketHolder:
    """Who a redeemed ticket was issued to: the token's name and its scopes then."""

    token_name: str
    scopes: tuple[str, ...]


def ticket_hash(ticket: str) -> bytes:
    """What is stored of a ticket (tickets are random: no salt or stretching needed)."""
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).digest()


async def issue(db: Database, ticket: str, holder: TicketHolder, ttl_seconds: float) -> datetime:
    """Store a new ticket for ``holder``; returns when it expires."""
    async with db.connection() as conn:
        expires_at: datetime = await conn.fetchval(
            db.sql(ISSUE), ticket_hash(ticket), holder.token_name, list(holder.scopes), ttl_seconds
        )
    return expires_at


async def redeem(db: Database, ticket: str) -> TicketHolder | None:
    """Consume a ticket: its holder if it existed and had not expired, else None."""
    async with db.connection() as conn:
        row = await conn.fetchrow(db.sql(REDEEM), ticket_hash(ticket))
    if row is None or not row["valid"]:
        return None
    return TicketHolder(row["token_name"], tuple(row["scopes"]))
