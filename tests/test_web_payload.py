"""How the edge names the place in a body that a decoder refused or could not reach."""

from __future__ import annotations

from exporter.domain.limits import MAX_DEPTH
from exporter.web.errors import Detail
from exporter.web.payload import locate, unstorable


def test_locate_names_the_value_at_an_offset() -> None:
    body = b'{"alerts": [{"labels": {"a": "1"}}, {"labels": {"team": "X", "b": 2}}], "v": 4}'
    assert locate(body, offset=body.index(b"X")) == "alerts[1].labels.team"
    assert locate(body, offset=body.index(b'"team"') + 1) == "alerts[1].labels.team"
    assert locate(body, offset=body.index(b"4")) == "v"
    assert locate(b"[1, 2, 3]", offset=7) == "[2]"


def test_locate_finds_the_first_container_past_a_depth_even_in_bad_json() -> None:
    assert locate(b'{"a": {"b": [[[', depth=3) == "a.b[0]"
    assert locate(b'{"a": [1, {"b": 2}]}', depth=3) is None
    assert locate(b'[{"x": 1}, {"y": [[]]}]', depth=3) == "[1].y[0]"
    body = b'{"k": ' + b"[" * 100_000
    assert locate(body, depth=MAX_DEPTH) == "k" + "[0]" * (MAX_DEPTH - 1)


def test_unstorable_strings_are_named() -> None:
    assert unstorable(b'{"a": {"b": "caf\xe9"}}') == Detail("a.b", "is not valid UTF-8")
    lone = unstorable(b'{"a": ["\\ud83d\\ude00", "x\\udc00"]}')
    assert lone is not None and lone.path == "a[1]"
    assert unstorable(b'{"a": "\\ud83d\\ude00"}') is None  # a pair is one character
    assert unstorable(b'{"a": "\\\\ud800"}') is None  # an escaped backslash, then text
    found = unstorable(b'{"a": "\\uD800"}', "line 3")
    assert found is not None and found.path == "line 3.a"
