"""Raw ASGI answers, for middleware that replies before (or instead of) the application."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

from api import rest_errors
from api.errors import ApiError


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send `body` as a complete JSON answer."""
    await _send(send, status, json.dumps(body).encode(), headers)


async def send_error(send: Send, error: ApiError, where: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send `error` as every REST layer answers it (api/rest_errors.py)."""
    await _send(send, error.status, rest_errors.render(error, where), headers)


async def _send(send: Send, status: int, content: bytes, headers: list[tuple[bytes, bytes]] | None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*(headers or []), (b"content-type", b"application/json"),
                            (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})
