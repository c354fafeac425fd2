"""Every 4xx body becomes {"error", "code", "detail"?}, whatever produced it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from api import errors
from api.rest_errors import reshape
from serving.guard import RequestGuard, json_counts


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


def test_client_text_in_pydantic_problems_is_clipped() -> None:
    long = "x" * 100_000
    detail = [{"type": "value_error", "loc": ["body", "items", 0, long], "msg": f"Value error, {long}",
               "input": {"variety": long}, "ctx": {"error": long}}]
    body = reshape(422, json.dumps({"detail": detail}).encode())
    assert len(json.dumps(body)) < 2_000  # messages are cut at MAX_MESSAGE, client values at MAX_SHOWN
    problem = body["detail"][0]
    assert problem["loc"] == ["body", "items", 0, errors.clipped(long)]
    assert problem["input"] == errors.clipped(json.dumps({"variety": long}))
    assert problem["ctx"] == {"error": errors.clipped(long)}
    assert body["error"].startswith(f"items.0.{errors.clipped(long)}: Value error, xxx")


def test_short_inputs_are_kept_as_given() -> None:
    detail = [{"loc": ["body", "store"], "msg": "bad", "input": [1, 2]}, {"loc": ["x"], "msg": "bad", "input": None}]
    assert [p["input"] for p in reshape(400, json.dumps({"detail": detail}).encode())["detail"]] == [[1, 2], None]


@pytest.mark.parametrize(("body", "counts"), [
    (b'{"data": [[1, 2], [3, 4]]}', (4, 3)),
    (b'{"data": "[[1,2]]"}', (3, 1)),
    (b'{"data": "\\u005b\\u005B1\\u002c2\\u005d]"}', (3, 1)),  # /predict parses the string again
    (b'{"id": "caf\\u00e9, \\\\u005b"}', (2, 1)),  # other escapes count nothing; an escaped backslash too much
])
def test_json_counts_include_escaped_brackets_and_commas(body: bytes, counts: tuple[int, int]) -> None:
    assert json_counts(body) == counts


GUARD = {"max_body_bytes": 4096, "max_json_containers": 10, "max_json_values": 20,
         "json_paths": frozenset({"/predict"})}


def guarded(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, Any]]:
    """Status and body of the guard's answer; the application behind it answers 299 with what reached it."""
    answers: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received = await receive()
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": received["body"]})

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        answers.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    asyncio.run(RequestGuard(app, **GUARD)(scope, receive, send))  # type: ignore[arg-type]
    content = b"".join(message.get("body", b"") for message in answers[1:])
    return answers[0]["status"], json.loads(content) if answers[0]["status"] != 299 else {"body": content}


JSON_TYPE = (b"content-type", b"application/json")


def test_two_content_types_are_refused_whatever_their_order() -> None:
    for second in (b"text/plain", b"application/json"):
        status, body = guarded("/v2/models/m/infer", b"[" * 50, [JSON_TYPE, (b"content-type", second)])
        assert (status, body) == (415, {"error": errors.CONTENT_TYPE_REPEATED.format(count=2),
                                        "code": "unsupported_media_type"})


def test_a_body_without_content_type_is_json_unless_a_web_page_sent_it() -> None:
    assert guarded("/v2/models/m/infer", b"{}", []) == (299, {"body": b"{}"})
    assert guarded("/v2/models/m/infer", b"{}", [(b"origin", b"http://a.test")])[0] == 415
    assert guarded("/v2/models/m/infer", b"[" * 11, [])[0] == 413  # counted as JSON
    assert guarded("/v2/models/m/infer", b"{}", [JSON_TYPE, (b"origin", b"http://a.test")])[0] == 299


def test_values_are_counted_by_their_commas() -> None:
    assert guarded("/predict", b"[" + b"1," * 20 + b"1]", [JSON_TYPE])[0] == 299
    status, body = guarded("/predict", b"[" + b"1," * 21 + b"1]", [JSON_TYPE])
    assert (status, body["error"]) == (413, errors.TOO_MANY_VALUES.format(limit=20))
    status, body = guarded("/predict", b'{"data": "' + b"\\u002c" * 21 + b'"}', [JSON_TYPE])
    assert (status, body["error"]) == (413, errors.TOO_MANY_VALUES.format(limit=20))


def test_binary_tensor_data_is_counted_up_to_the_json_only() -> None:
    """The bytes after Inference-Header-Content-Length are the tensors' elements, whatever bytes they hold; the JSON
    before them is counted as any JSON body."""
    binary = (b"[{," * 100)
    header = (b"inference-header-content-length", b"2")
    assert guarded("/v2/models/m/infer", b"{}" + binary, [header])[0] == 299
    assert guarded("/v2/models/m/infer", b"{}" + binary, [header, (b"content-type", b"application/octet-stream")]
                   )[0] == 299
    assert guarded("/v2/models/m/infer", b"[" * 11 + binary, [(header[0], b"11")])[0] == 413
    assert guarded("/v2/models/m/infer", b"{}" + binary, [])[0] == 413  # no header: all of it is JSON
