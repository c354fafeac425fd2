"""ASGI middleware: a body-size limit, and one JSON object shape for every 4xx answer.

BentoML answers some client errors with a JSON array, Starlette with plain text and FastAPI with its own
object; clients get `{"error": message, "code": ..., "detail"?: ...}` from all of them.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, rest_errors
from config import get_settings
from data.schema import FEATURES
from serving.bodies import replay
from serving.responses import send_error, send_json

BINARY_HEADER = b"inference-header-content-length"  # V2 binary tensor data: the JSON part's length
JSON, OCTET_STREAM = b"application/json", b"application/octet-stream"
V2_PREFIX, V2_INFER = "/v2/", "/infer"


JSON_PATHS = frozenset({"/predict", "/v1/classify", "/v1/feedback"})  # bodies that must be JSON


def request_guard(app: ASGIApp) -> RequestGuard:
    """The guard with its limits from the settings. The largest legitimate structure: a V2 request of 16 named
    tensors, each nested [n, 1]; the most values (commas): 16 per bean, plus a few per tensor (shape, keys,
    parameters)."""
    settings = get_settings()
    beans = settings.max_beans_per_request
    return RequestGuard(app, max_body_bytes=settings.max_body_bytes,
                        max_json_containers=len(FEATURES) * (beans + 1) + 100,
                        max_json_values=len(FEATURES) * (beans + 1) + 1_000, json_paths=JSON_PATHS)


class RequestGuard:
    """Bound every request body before the application parses it; reshape 4xx answers into one error object.

    Bodies over `max_body_bytes` (declared or counted) get 413. So do JSON bodies with more than
    `max_json_containers` arrays and objects or more than `max_json_values` commas: parsing, validating and
    reporting errors on millions of tiny `{}`, `[]` or `1` costs hundreds of megabytes however small the body,
    so they are counted (one pass over the bytes, in C) before anything is parsed. Escaped brackets and commas
    (`\\u005b`) count too: /predict parses its `data` string as JSON again. Bodies without a Content-Type are
    counted as JSON (V2 clients such as tritonclient send none); from a web page (an `Origin` header) such a body
    is refused (415), or any page a user visits could post one. A request with two Content-Types is refused
    (415): this guard and the application must not read different ones. JSON routes take JSON only, V2 inference
    also its binary tensor data as application/octet-stream (415 otherwise). A V2 body with binary tensor data is
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
        content_types, declared, from_page, binary, json_length = [], None, False, False, None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_types.append(value)
            elif name == b"content-length":
                declared = value
            elif name == b"origin":
                from_page = True
            elif name == BINARY_HEADER:
                binary = True
                json_length = int(value) if value.isdigit() else None
        if len(content_types) > 1:
            await send_error(send, errors.UnsupportedMediaType(
                errors.CONTENT_TYPE_REPEATED.format(count=len(content_types))), scope["path"])
            return
        untyped = not content_types
        media_type = b"" if untyped else content_types[0].split(b";")[0].strip().lower()
        is_json = media_type == JSON
        if scope["method"] == "POST" and not self._accepts(scope["path"], media_type, from_page, binary):
            await send_error(send, errors.UnsupportedMediaType(errors.UNSUPPORTED_MEDIA_TYPE), scope["path"])
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send, scope)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read_bounded(receive)
            if body is None:
                await self._too_large(send, scope)
                return
            if is_json or untyped or json_length is not None:
                # With binary tensor data, only the JSON that starts the body is parsed; the rest is bytes.
                containers, values = json_counts(body if json_length is None else body[:json_length])
                if containers > self.max_json_containers:
                    await send_error(send, errors.TooLarge(
                        errors.TOO_MANY_CONTAINERS.format(limit=self.max_json_containers)), scope["path"])
                    return
                if values > self.max_json_values:
                    await send_error(send, errors.TooLarge(
                        errors.TOO_MANY_VALUES.format(limit=self.max_json_values)), scope["path"])
                    return
            receive = replay(body)
        await self.app(scope, receive, _ErrorShaper(send))

    def _accepts(self, path: str, media_type: bytes, from_page: bool, binary: bool) -> bool:
        """Whether a POST's Content-Type (b"" when it has none) suits the path: JSON where JSON is parsed, and a
        V2 inference request's binary tensor data as application/octet-stream; no untyped body from a web page."""
        if not media_type:
            return not from_page and path not in self.json_paths
        if path in self.json_paths:
            return media_type == JSON
        if path.startswith(V2_PREFIX) and path.endswith(V2_INFER):
            return media_type == JSON or (binary and media_type == OCTET_STREAM)
        return True

    async def _too_large(self, send: Send, scope: Scope) -> None:
        await send_error(send, errors.TooLarge(errors.BODY_TOO_LARGE.format(limit=self.max_body_bytes)), scope["path"])

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
            await send_json(self._send, status, rest_errors.reshape(status, b"".join(self._body)),
                            [(k, v) for k, v in self._start["headers"]
                                   if k.lower() not in (b"content-length", b"content-type")])

