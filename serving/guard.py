"""ASGI middleware: a body-size limit, and one JSON object shape for every 4xx answer.

BentoML answers some client errors with a JSON array, Starlette with plain text and FastAPI with its own
object; clients get `{"error": message, "code": ..., "detail"?: ...}` from all of them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

import errors
from serving.bodies import replay
from serving.responses import send_json

CODES = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
         415: "unsupported_media_type", 422: "invalid_input"}
MAX_DETAIL = 20  # validation problems listed in an error answer; the message counts the rest
MAX_MESSAGE = 500  # characters of a foreign error message kept


class RequestGuard:
    """Bound every request body before the application parses it; reshape 4xx answers into one error object.

    Bodies over `max_body_bytes` (declared or counted) get 413. So do JSON bodies with more than
    `max_json_containers` arrays and objects: parsing, validating and reporting errors on millions of tiny
    `{}` or `[]` costs hundreds of megabytes however small the body, so they are counted (a byte count, in C)
    before anything is parsed (bodies without a Content-Type too: V2 clients such as tritonclient send none).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_json_containers: int,
                 json_paths: frozenset[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_containers = max_json_containers
        self.json_paths = json_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        is_json = _is_json(headers)
        if scope["method"] == "POST" and scope["path"] in self.json_paths and not is_json:
            await send_json(send, 415, errors.error_body(errors.UNSUPPORTED_MEDIA_TYPE, CODES[415]))
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send, errors.BODY_TOO_LARGE.format(limit=self.max_body_bytes))
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read_bounded(receive)
            if body is None:
                await self._too_large(send, errors.BODY_TOO_LARGE.format(limit=self.max_body_bytes))
                return
            if (is_json or b"content-type" not in headers) and (
                    body.count(b"[") + body.count(b"{") > self.max_json_containers):
                await self._too_large(send, errors.TOO_MANY_CONTAINERS.format(limit=self.max_json_containers))
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
    async def _too_large(send: Send, message: str) -> None:
        await send_json(send, 413, errors.error_body(message, CODES[413]))


def _is_json(headers: dict[bytes, bytes]) -> bool:
    media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return media_type == b"application/json"


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
        return errors.error_body(_summarise(detail), code, detail[:MAX_DETAIL])  # pydantic (BentoML or FastAPI)
    message, given_code = payload.get("error"), payload.get("code")
    if isinstance(message, str) and message and isinstance(given_code, str):  # ours already
        return errors.error_body(message, given_code, detail)
    return errors.error_body(str(message or detail or payload)[:MAX_MESSAGE], code)


def _summarise(problems: list[dict[str, Any]]) -> str:
    parts = []
    for problem in problems[:3]:
        where = ".".join(str(part) for part in problem.get("loc", ()) if part not in ("body",))
        message = str(problem.get("msg") or "invalid value")
        parts.append(f"{where}: {message}" if where else message)
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(parts) + more
