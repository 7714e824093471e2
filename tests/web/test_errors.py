"""The error answer itself never fails."""

from __future__ import annotations

import msgspec

from exporter.web.errors import ApiError, Detail, error_response


def test_a_lone_surrogate_quoted_from_the_request_is_escaped_not_a_500() -> None:
    error = ApiError(400, "invalid_body", "line 2: bad \udc6d", [Detail("[0].\ud800", "x\udfff")])
    response = error_response(error)
    assert response.status == 400
    assert isinstance(response.body, bytes)
    body = msgspec.json.decode(response.body)
    assert body["error"]["message"] == "line 2: bad \\udc6d"
    assert body["error"]["details"] == [{"path": "[0].\\ud800", "message": "x\\udfff"}]
