"""Every 4xx body becomes {"error", "code", "detail"?}, whatever produced it."""

from __future__ import annotations

import json

from serving.guard import reshape


def test_bentomls_one_element_array_becomes_an_object() -> None:
    assert reshape(400, json.dumps([{"error": "bad"}]).encode()) == {"error": "bad", "code": "invalid_input"}


def test_pydantic_errors_are_summarised_and_kept_as_detail() -> None:
    detail = [{"loc": ["body", "beans", 0, "Area"], "msg": "Field required", "type": "missing"}]
    body = reshape(422, json.dumps({"detail": detail}).encode())
    assert body == {"error": "beans.0.Area: Field required", "code": "invalid_input", "detail": detail}


def test_many_pydantic_errors_are_counted() -> None:
    detail = [{"loc": ["x", str(i)], "msg": "bad"} for i in range(5)]
    assert reshape(400, json.dumps({"detail": detail}).encode())["error"].endswith("(and 2 more)")


def test_plain_text_and_our_own_errors() -> None:
    assert reshape(404, b"Not Found") == {"error": "Not Found", "code": "not_found"}
    ours = {"error": "too many", "code": "too_large"}
    assert reshape(413, json.dumps(ours).encode()) == ours
