"""`/readyz` and `/livez` as JSON reports, which BentoML's own probes cannot carry.

Both ask the worker's service instance at request time: `readiness()` gives a report with `ready`, and
`alive()` says whether the worker can still do its job (its prediction writer runs).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.responses import send_json
from serving.running import service_if_started


class Probes:
    """Answer GET `/readyz` (200 or 503, with the report) and `/livez` (200, or 503 once the worker is broken)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in ("/readyz", "/livez") or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        service = service_if_started()
        if service is None:
            await send_json(send, 503, {"ready": False} if path == "/readyz" else {"alive": False})
        elif path == "/readyz":
            report = await service.readiness()
            await send_json(send, 200 if report.ready else 503, report.model_dump())
        else:
            alive = service.alive()
            await send_json(send, 200 if alive else 503, {"alive": alive})
