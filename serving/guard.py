"""ASGI middleware: a body-size limit, and one JSON object shape for every 4xx answer.

BentoML answers some client errors with a JSON array, Starlette with plain text and FastAPI with its own
object; clients get `{"error": message, "code": ..., "detail"?: ...}` from all of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from serving.bodies import replay
from serving.responses import send_json

CODES = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
         415: "unsupported_media_type", 422: "invalid_input"}
MAX_DETAIL = 20  # validation problems listed in an error answer; the message counts the rest
MAX_MESSAGE = 500  # characters of a foreign error message kept
BINARY_HEADER = b"inference-header-content-length"  # V2 binary tensor data: the JSON part's length


class RequestGuard:
    """Bound every request body before the application parses it; reshape 4xx answers into one error object.

    Bodies over `max_body_bytes` (declared or counted) get 413. So do JSON bodies with more than
    `max_json_containers` arrays and objects or more than `max_json_values` commas: parsing, validating and
    reporting errors on millions of tiny `{}`, `[]` or `1` costs hundreds of megabytes however small the body,
    so they are counted (one pass over the bytes, in C) before anything is parsed. Escaped brackets and commas
    (`\\u005b`) count too: /predict parses its `data` string as JSON again. Bodies without a Content-Type are
    counted as JSON (V2 clients such as tritonclient send none); from a web page (an `Origin` header) such a body
    is refused (415), or any page a user visits could post one. A request with two Content-Types is refused
    (415): this guard and the application must not read different ones. A V2 body with binary tensor data is
    counted up to its `Inference-Header-Content-Length`: the JSON; the bytes after it are the tensors' elements.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_json_containers: int, max_json_values: int,
                 json_paths: frozenset[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_containers = max_json_containers
        self.max_json_values = max_json_values
        self.json_paths = json_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_types, declared, from_page, json_length = [], None, False, None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_types.append(value)
            elif name == b"content-length":
                declared = value
            elif name == b"origin":
                from_page = True
            elif name == BINARY_HEADER and value.isdigit():
                json_length = int(value)
        if len(content_types) > 1:
            await self._refuse(send, 415, errors.CONTENT_TYPE_REPEATED.format(count=len(content_types)))
            return
        untyped = not content_types
        is_json = not untyped and _is_json(content_types[0])
        if scope["method"] == "POST" and not is_json and (
                scope["path"] in self.json_paths or (untyped and from_page)):
            await self._refuse(send, 415, errors.UNSUPPORTED_MEDIA_TYPE)
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, 413, errors.BODY_TOO_LARGE.format(limit=self.max_body_bytes))
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read_bounded(receive)
            if body is None:
                await self._refuse(send, 413, errors.BODY_TOO_LARGE.format(limit=self.max_body_bytes))
                return
            if is_json or untyped or json_length is not None:
                # With binary tensor data, only the JSON that starts the body is parsed; the rest is bytes.
                containers, values = json_counts(body if json_length is None else body[:json_length])
                if containers > self.max_json_containers:
                    await self._refuse(send, 413, errors.TOO_MANY_CONTAINERS.format(limit=self.max_json_containers))
                    return
                if values > self.max_json_values:
                    await self._refuse(send, 413, errors.TOO_MANY_VALUES.format(limit=self.max_json_values))
                    return
            receive = replay(body)
        await self.app(scope, receive, _ErrorShaper(send))

    async def _read_bounded(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
        await send_json(send, status, errors.error_body(message, CODES[status]))


def json_counts(body: bytes) -> tuple[int, int]:
    """Upper bounds of the arrays and objects, and of the commas, a JSON body holds (strings' contents included).

    One pass keeps only the bytes `[`, `{` and `,` (faster than counting each); JSON escapes of them, which a
    parser turns back into brackets inside a string that /predict parses again, are counted only when the body
    holds a backslash at all.
    """
    structure = body.translate(None, _NOT_STRUCTURE)
    commas = structure.count(b",")
    containers = len(structure) - commas
    if b"\\" in body:
        escaped = body.lower()
        commas += escaped.count(b"\\u002c")
        containers += escaped.count(b"\\u005b") + escaped.count(b"\\u007b")
    return containers, commas


_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b"[{,")


def _is_json(content_type: bytes) -> bool:
    return content_type.split(b";")[0].strip().lower() == b"application/json"


class _ErrorShaper:
    """A `send` that holds a 4xx answer until its body is complete, then sends it reshaped."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._body: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            self._start = message
            return
        if self._start is None or message["type"] != "http.response.body":
            await self._send(message)
            return
        self._body.append(message.get("body", b""))
        if not message.get("more_body", False):
            status = self._start["status"]
            await send_json(self._send, status, reshape(status, b"".join(self._body)),
                            [(k, v) for k, v in self._start["headers"]
                                   if k.lower() not in (b"content-length", b"content-type")])


def reshape(status: int, body: bytes) -> dict[str, Any]:
    """The project's error object for whatever a 4xx body was."""
    code = CODES.get(status, "client_error")
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        return errors.error_body(body[:MAX_MESSAGE].decode(errors="replace").strip() or f"HTTP {status}", code)
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML's [{"error": ...}]
    if not isinstance(payload, dict):
        return errors.error_body(str(payload)[:MAX_MESSAGE] or f"HTTP {status}", code)
    detail = payload.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict) and "loc" in detail[0]:
        # pydantic's (BentoML's or FastAPI's): client text in it is clipped, as in every message
        return errors.error_body(summarise(detail), code, [_clipped(problem) for problem in detail[:MAX_DETAIL]])
    message, given_code = payload.get("error"), payload.get("code")
    if isinstance(message, str) and message and isinstance(given_code, str):  # ours already
        return errors.error_body(message, given_code, detail)
    return errors.error_body(str(message or detail or payload)[:MAX_MESSAGE], code)


def summarise(problems: Sequence[Mapping[str, Any]]) -> str:
    """One line naming the first few of pydantic's problems: `beans.0.Area: Field required`; field names clipped."""
    parts = []
    for problem in problems[:3]:
        where = ".".join(errors.clipped(str(part)) for part in problem.get("loc", ()) if part != "body")
        message = errors.clipped(str(problem.get("msg") or "invalid value"), MAX_MESSAGE)
        parts.append(f"{where}: {message}" if where else message)
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(parts) + more


def _clipped(problem: Any) -> Any:
    """One of pydantic's problems with the client's text in it clipped: field names, the input, the context."""
    if not isinstance(problem, dict):
        return errors.clipped(str(problem), MAX_MESSAGE)
    kept = dict(problem)
    if isinstance(loc := kept.get("loc"), list):
        kept["loc"] = [part if isinstance(part, int) else errors.clipped(str(part)) for part in loc]
    if "msg" in kept:
        kept["msg"] = errors.clipped(str(kept["msg"]), MAX_MESSAGE)
    if "input" in kept:
        kept["input"] = _clipped_value(kept["input"])
    if isinstance(ctx := kept.get("ctx"), dict):
        kept["ctx"] = {errors.clipped(str(key)): _clipped_value(value) for key, value in ctx.items()}
    return kept


def _clipped_value(value: Any) -> Any:
    """A JSON value as given when short; else its JSON text, clipped."""
    if value is None or isinstance(value, bool | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value)
    return value if len(text) <= errors.MAX_SHOWN else errors.clipped(text)
