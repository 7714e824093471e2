"""The HTTP foundation: auth scopes, the JSON error shape, body limits, content types.

These run against a route registered through the same Api table as the real routes, one that
decodes a strictly typed body and stores it in PostgreSQL, so "nothing stored" is observable.
"""

from __future__ import annotations

import gzip
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from exporter.config import Config
from exporter.features.core import CONFIG, DATABASE
from exporter.web.api import API, Route
from exporter.web.app import create_app
from exporter.web.payload import decode_json, json_response, media_type, read_body
from tests.conftest import MakeClient

TOKENS = {
    "auth": {
        "tokens": [
            {"name": "writer", "token": "w-token", "scopes": ["write"]},
            {"name": "reader", "token": "r-token", "scopes": ["read"]},
            {"name": "boss", "token": "a-token", "scopes": ["admin"]},
        ]
    },
    "web": {"max_body_bytes": 4096},
}


class Note(msgspec.Struct, forbid_unknown_fields=True):
    """A body with a required string and a number."""

    text: str
    value: float


async def post_note(request: web.Request) -> web.Response:
    """Decode, then store in the test's own database."""
    media_type(request, ("application/json",))
    body = await read_body(request, request.app[CONFIG].web.max_body_bytes)
    note = decode_json(body, Note)
    async with request.app[DATABASE].transaction() as conn:
        await conn.execute(
            "INSERT INTO monitoring.monitoring_dashboard_config (kind, name, config)"
            " VALUES ('dashboard', $1, '{}')",
            note.text,
        )
    return json_response({"stored": note.text}, status=201)


@pytest.fixture
def make_note_client(make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> MakeClient:
    """The real app plus the note route."""
    original = create_app

    def with_note_route(config: Config, *, dsn: str) -> web.Application:
        app = original(config, dsn=dsn)
        route = Route("POST", "/api/v1/notes", post_note, "store a note", "write", body=Note)
        app[API].add(app, route)
        return app

    monkeypatch.setattr("tests.conftest.create_app", with_note_route)
    return make_client


@pytest.fixture
async def client(make_note_client: MakeClient) -> TestClient[Any, Any]:
    return await make_note_client(TOKENS)


async def stored(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM monitoring.monitoring_dashboard_config")
    return count


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_write_is_stored(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.post(
        "/api/v1/notes", json={"text": "a", "value": 1}, headers=auth("w-token")
    )
    assert resp.status == 201
    assert await stored(db) == 1


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="monitoring-exporter"'),
        (auth("nope"), 'error="invalid_token"'),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 'error="invalid_request"'),
    ],
)
async def test_missing_or_invalid_token_is_401(
    client: TestClient[Any, Any], db: asyncpg.Connection, headers: dict[str, str], challenge: str
) -> None:
    resp = await client.post("/api/v1/notes", json={"text": "a", "value": 1}, headers=headers)
    assert resp.status == 401
    assert challenge in resp.headers["WWW-Authenticate"]
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert await stored(db) == 0


async def test_token_without_the_scope_is_403(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.post(
        "/api/v1/notes", json={"text": "a", "value": 1}, headers=auth("r-token")
    )
    assert resp.status == 403
    body = await resp.json()
    assert body["error"]["code"] == "forbidden"
    assert "write" in body["error"]["message"]
    assert await stored(db) == 0


async def test_admin_holds_every_scope(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.post(
        "/api/v1/notes", json={"text": "a", "value": 1}, headers=auth("a-token")
    )
    assert resp.status == 201


async def test_without_tokens_the_api_is_closed_unless_disabled(
    make_note_client: MakeClient, db: asyncpg.Connection
) -> None:
    closed = await make_note_client({})
    resp = await closed.post("/api/v1/notes", json={"text": "a", "value": 1})
    assert resp.status == 401
    assert await stored(db) == 0
    opened = await make_note_client({"auth": {"disabled": True}})
    resp = await opened.post("/api/v1/notes", json={"text": "a", "value": 1})
    assert resp.status == 201
    assert await stored(db) == 1


async def test_body_over_the_limit_is_413_without_reading_it(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    big = b'{"text": "' + b"x" * 10_000 + b'", "value": 1}'
    resp = await client.post(
        "/api/v1/notes", data=big, headers={**auth("w-token"), "Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    assert await stored(db) == 0


async def test_chunked_body_over_the_limit_is_413(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1000

    resp = await client.post(
        "/api/v1/notes",
        data=chunks(),
        headers={**auth("w-token"), "Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert await stored(db) == 0


async def test_gzip_bomb_is_413_without_inflating_it(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    bomb = gzip.compress(b"[" + b" " * 3_000_000 + b"]")
    assert len(bomb) < 4096
    resp = await client.post(
        "/api/v1/notes",
        data=bomb,
        headers={**auth("w-token"), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status == 413
    assert await stored(db) == 0


async def test_gzip_body_is_accepted(client: TestClient[Any, Any], db: asyncpg.Connection) -> None:
    resp = await client.post(
        "/api/v1/notes",
        data=gzip.compress(b'{"text": "zipped", "value": 2}'),
        headers={**auth("w-token"), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert resp.status == 201
    assert await db.fetchval("SELECT name FROM monitoring.monitoring_dashboard_config") == "zipped"


async def test_wrong_content_type_is_415(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.post(
        "/api/v1/notes", data="text=a", headers={**auth("w-token"), "Content-Type": "text/plain"}
    )
    assert resp.status == 415
    assert (await resp.json())["error"]["code"] == "unsupported_media_type"
    assert await stored(db) == 0


@pytest.mark.parametrize(
    ("data", "code", "path"),
    [
        (b'{"text": "a", "value": ', "malformed_json", "(body)"),
        (b'{"text": "a", "value": "high"}', "invalid_body", "value"),
        (b'{"text": "a"}', "invalid_body", "(body)"),
        (b'{"text": "a", "value": 1, "colour": "red"}', "invalid_body", "colour"),
    ],
)
async def test_bad_json_is_400_naming_the_field(
    client: TestClient[Any, Any], db: asyncpg.Connection, data: bytes, code: str, path: str
) -> None:
    resp = await client.post(
        "/api/v1/notes", data=data, headers={**auth("w-token"), "Content-Type": "application/json"}
    )
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == code
    assert error["details"][0]["path"] == path
    assert await stored(db) == 0


async def test_unknown_path_and_method_are_json(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.delete("/metrics")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


async def test_storage_down_is_503_with_retry_after(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    await client.app[DATABASE].close()
    resp = await client.post(
        "/api/v1/notes", json={"text": "a", "value": 1}, headers=auth("w-token")
    )
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert (await resp.json())["error"]["code"] == "storage_unavailable"
    assert await stored(db) == 0


async def test_openapi_lists_api_routes_with_their_types(client: TestClient[Any, Any]) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    op = doc["paths"]["/api/v1/notes"]["post"]
    assert op["security"] == [{"bearer": ["write"]}]
    schema = doc["components"]["schemas"]["Note"]
    assert set(schema["required"]) == {"text", "value"}
    assert {"401", "403", "400", "503"} <= set(op["responses"])
