"""``Idempotency-Key`` on writes: a retry with the same key gets the first outcome back.

A key belongs to the token that sent it (two clients never collide) and to one request: the
same key with another route or body is refused (422, as the IETF draft on the header says).
The key is claimed, and the response stored, in the write's own transaction
(``storage.idempotency``), so a retry after a lost answer finds either nothing (the write did
not commit: it runs again) or the stored response (it did: nothing is stored twice).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec
from aiohttp import web

from exporter.features.core import DATABASE
from exporter.storage import idempotency as storage
from exporter.storage.idempotency import IdempotencyKey
from exporter.web.auth import PRINCIPAL
from exporter.web.errors import ApiError, Detail, encode_error

HEADER = "Idempotency-Key"
# printable ASCII, as header values are in practice; long enough for a UUID or a hash
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_encoder = msgspec.json.Encoder()


def key_of(request: web.Request, body: bytes) -> IdempotencyKey | None:
    """The request's key, if it sent one; 400 when it is not a usable key."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    if not _KEY.match(raw):
        raise ApiError(
            400,
            "invalid_header",
            "the Idempotency-Key is not valid",
            [Detail(HEADER, "1 to 255 printable ASCII characters")],
        )
    principal = request.get(PRINCIPAL)
    resource = request.match_info.route.resource
    route = f"{request.method} {resource.canonical if resource is not None else request.path}"
    digest = hashlib.sha256()
    for part in (request.method, request.path_qs, request.content_type):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return IdempotencyKey(
        principal.name if principal is not None else "anonymous", raw, route, digest.digest()
    )


async def replay(request: web.Request, key: IdempotencyKey | None) -> web.Response | None:
    """The stored response of a key used before, or None; 422 when it was used otherwise."""
    if key is None:
        return None
    stored = await storage.lookup(request.app[DATABASE], key.principal, key.key)
    if stored is None:
        return None
    if stored.route != key.route or stored.request_hash != key.request_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for another request",
            [Detail(HEADER, "send a new key for a new request")],
        )
    return web.Response(
        status=stored.status,
        body=stored.body,
        content_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


async def replayed(request: web.Request, key: IdempotencyKey) -> web.Response:
    """The stored response of a key a concurrent request claimed first (it committed)."""
    response = await replay(request, key)
    if response is None:  # cannot happen: the claim saw the committed key
        raise ApiError(409, "conflict", "a request with this Idempotency-Key is in progress")
    return response


def render(status: int, body: Any) -> tuple[int, bytes]:
    """A response as stored for replay."""
    return status, _encoder.encode(body)


def render_error(error: ApiError) -> tuple[int, bytes]:
    """An error response as stored for replay (a refusal decided in the write's transaction)."""
    return error.status, encode_error(error)
