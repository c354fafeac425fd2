"""Raw ASGI answers, for middleware that replies before (or instead of) the application."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send `body` as a complete JSON answer."""
    content = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [*(headers or []), (b"content-type", b"application/json"),
                            (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})
