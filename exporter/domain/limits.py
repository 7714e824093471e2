"""What the storage can hold: bounds that every wire type states and every input keeps.

PostgreSQL refuses NUL in text and jsonb, ``integer`` columns hold 32 bits and ``bigint``
63, and Python represents the years 1 to 9999 only (PostgreSQL holds more, so a value it
stored could not be read back). Free-form JSON is bounded in depth so that decoding it again
(on every read, in every stream event) can never exhaust the interpreter's stack.

Pure: constants, annotated types and checks on decoded values; no I/O.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
# levels of objects and arrays a JSON document may nest (the document itself is level 1)
MAX_DEPTH = 64
# a day inside Python's range on each side, so that any offset and the arithmetic of a
# window (``until - 1h``) stay representable
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
_ZERO = timedelta(0)

NUL = "contains a NUL character (\\u0000), which cannot be stored"
TOO_DEEP = f"is nested more than {MAX_DEPTH} levels deep"
OUT_OF_RANGE = "must lie between 0001-01-02 and 9999-12-30 (UTC)"

# documents the rule in the OpenAPI schema; the edge enforces it on every string of a body
# in one pass (msgspec's own pattern check costs three times the decoding of a string)
NoNul = msgspec.Meta(extra_json_schema={"pattern": "^[^\\u0000]*$"})
Text = Annotated[str, NoNul]
Version = Annotated[int, msgspec.Meta(ge=1, le=INT4_MAX)]
Count = Annotated[int, msgspec.Meta(ge=0, le=INT8_MAX)]
RowId = Annotated[int, msgspec.Meta(ge=1, le=INT8_MAX)]
Timestamp = Annotated[
    datetime,
    msgspec.Meta(
        tz=True,
        extra_json_schema={
            "description": "RFC 3339 with an offset, between 0001-01-02 and 9999-12-30 (UTC)"
        },
    ),
]


def time_problem(at: datetime) -> str | None:
    """Why a timestamp cannot be stored and read back, or None when it can."""
    if at.tzinfo is None:
        return "must have a time zone offset"
    if not EARLIEST <= at <= LATEST:
        return OUT_OF_RANGE
    return None


def as_utc(at: datetime) -> datetime:
    """The same instant in UTC (PostgreSQL parses offsets of at most 15:59 from text)."""
    return at if at.utcoffset() == _ZERO else at.astimezone(UTC)


def join(path: str, inner: str) -> str:
    """A path inside the value at ``path`` (``metadata`` + ``a[0]`` → ``metadata.a[0]``)."""
    if not inner:
        return path
    if not path or inner.startswith("["):
        return path + inner
    return f"{path}.{inner}"


def value_problems(value: Any, *, depth: int = 1, limit: int = 20) -> list[tuple[str, str]]:
    """What in a decoded value cannot be stored, as (path, message), at most ``limit``.

    Walks structs (by their wire names), dicts, lists, strings (NUL), numbers (finite),
    timestamps (:func:`time_problem`) and raw JSON (:func:`raw_json_problem`); ``depth`` is
    the value's own level in its document. Iterative, so any depth is safe to walk.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(value, "", depth)]
    while stack and len(found) < limit:
        node, path, level = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                found.append((path, NUL))
        elif isinstance(node, float):
            if not math.isfinite(node):
                found.append((path, "must be a finite number"))
        elif isinstance(node, datetime):
            problem = time_problem(node)
            if problem:
                found.append((path, problem))
        elif isinstance(node, msgspec.Raw):
            raw = raw_json_problem(bytes(node), depth=level)
            if raw:
                found.append((join(path, raw[0]), raw[1]))
        elif isinstance(node, (dict, list, tuple, msgspec.Struct)):
            if level > MAX_DEPTH:
                found.append((path, TOO_DEEP))
                continue
            children = _children(node, path)
            # reversed, so that problems come out in document order
            stack.extend((child, where, level + 1) for where, child in reversed(children))
    return found


def _children(node: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        out = []
        for key, child in node.items():
            where = f"{path}.{key}" if path else str(key)
            out.append((where, key))  # a key is a string that gets stored too
            out.append((where, child))
        return out
    if isinstance(node, msgspec.Struct):
        names = node.__struct_encode_fields__
        return [
            (f"{path}.{name}" if path else name, getattr(node, attr))
            for attr, name in zip(node.__struct_fields__, names, strict=True)
        ]
    return [(f"{path}[{i}]", child) for i, child in enumerate(node)]


def raw_json_problem(raw: bytes, *, depth: int = 1) -> tuple[str, str] | None:
    """What in a JSON text (already well-formed) cannot be stored as jsonb, as (relative path,
    message): invalid UTF-8, an escaped NUL, or nesting beyond :data:`MAX_DEPTH` counted from
    ``depth``, the text's own level in its document."""
    if not raw.isascii():
        try:
            raw.decode()
        except UnicodeDecodeError:
            return "", "is not valid UTF-8"
    brackets = raw.count(b"[") + raw.count(b"{")
    if b"\\u0000" not in raw and depth - 1 + brackets <= MAX_DEPTH:
        return None  # the common case, decided by two scans in C
    try:
        decoded = msgspec.json.decode(raw)
    except RecursionError:
        return "", TOO_DEEP
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # not ours to judge here: the decoder that took it reports it
    problems = value_problems(decoded, depth=depth, limit=1)
    return problems[0] if problems else None
