"""Prometheus metrics with bounded labels, optionally on a port of their own.

BentoML labels its request metrics with the raw request path, so every unknown path a scanner tries becomes a
new time series, forever (4,000 such requests grew /metrics from 64 KB to 24 MB). `RouteLabels` wraps the whole
application, outside BentoML's metrics middleware, and shows that middleware the route's template instead:
`/{unknown}` for a path no route serves. The next layer in, `RestorePath`, gives the real path back for routing.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors
from config import get_settings
from serving.responses import send_error

if TYPE_CHECKING:
    from db.spool import Spool

UNKNOWN_PATH = "/{unknown}"
MAX_CACHED_PATH = 256  # characters: a longer path is matched again each time, never kept (4,096 of 64 KB: 256 MiB)
_ORIGINAL_PATH = "drybeans.path"


class RouteLabels:
    """Outermost layer: replace `scope["path"]` by its route's template until `RestorePath` puts it back.

    Templates of the paths seen are cached, up to MAX_CACHED_PATH characters each: a scanner's long unique paths
    would otherwise stay in memory.
    """

    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        routes = tuple(routes)

        def template(method: str, path: str) -> str:
            return _template(routes, {"type": "http", "method": method, "path": path, "root_path": ""}) \
                or UNKNOWN_PATH

        self._matched = template
        self._cached = lru_cache(maxsize=4096)(template)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            label = (self._cached if len(path) <= MAX_CACHED_PATH else self._matched)(scope["method"], path)
            if label != scope["path"]:
                scope[_ORIGINAL_PATH] = scope["path"]
                scope["path"] = label
        await self.app(scope, receive, send)


class RestorePath:
    """First of the service's own middleware: route by the real path again."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _ORIGINAL_PATH in scope:
            scope["path"] = scope.pop(_ORIGINAL_PATH)
        await self.app(scope, receive, send)


def spool_exposition(spool: Spool) -> str:
    """The spool's gauges, in Prometheus' text format: shared by all workers, so read at scrape time."""
    return (
        "# HELP drybeans_spool_depth Records (predictions and feedback) waiting on local disk for the database.\n"
        "# TYPE drybeans_spool_depth gauge\n"
        f"drybeans_spool_depth {spool.depth()}\n"
        "# HELP drybeans_dead_letters Records the database refused (or feedback whose prediction never came), "
        "set aside on local disk for an operator: python -m db.deadletter replay.\n"
        "# TYPE drybeans_dead_letters gauge\n"
        f"drybeans_dead_letters {spool.dead_letters.count()}\n"
        "# HELP drybeans_feedback_waiting Spooled feedback records waiting for their prediction to be recorded.\n"
        "# TYPE drybeans_feedback_waiting gauge\n"
        f"drybeans_feedback_waiting {spool.held()}\n"
    )


def metrics_elsewhere(app: ASGIApp) -> ASGIApp:
    """/metrics refused on the API's port when DRYBEANS_METRICS_PORT gives them a port of their own; else nothing."""
    port = get_settings().metrics_port
    return app if port is None else MetricsElsewhere(app, port=port)


class MetricsElsewhere:
    """On the API's port, answer /metrics with 404 when the metrics have a port of their own."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.message = f"metrics are served on port {port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics":
            await send_error(send, errors.NotFound(self.message), scope["path"])
            return
        await self.app(scope, receive, send)


def label_by_route(service: Any) -> None:
    """Wrap the app BentoML builds for `service` in RouteLabels, and add RestorePath as its first middleware.

    BentoML offers no hook outside its own metrics middleware, so `service` (a bentoml Service) takes on a
    subclass whose `to_asgi` wraps the app; the subclass adds behaviour only, no state.
    """

    class RouteLabelledService(type(service)):  # type: ignore[misc]
        __slots__ = ()

        def to_asgi(self, is_main: bool = True) -> ASGIApp:
            app = super().to_asgi(is_main)
            return RouteLabels(app, app.routes)

    service.__class__ = RouteLabelledService
    service.add_asgi_middleware(RestorePath)


def _template(routes: Iterable[BaseRoute], scope: Scope) -> str | None:
    """The path template of the route that serves `scope` (any method), or None."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            inner = _template(route.routes, {**scope, **child})
            if inner is not None:
                return route.path.rstrip("/") + inner if route.path != "/" else inner
            continue
        return str(getattr(route, "path", scope["path"]))
    return None


def serve_on_port(port: int, render: Callable[[], str], wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """Serve GET /metrics on `port` from a thread of this worker; every worker binds it (SO_REUSEPORT)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def metrics(_request: Request) -> PlainTextResponse:
        return PlainTextResponse(await run_in_threadpool(render),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    app = wrap(Starlette(routes=[Route("/metrics", metrics)]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("0.0.0.0", port))  # noqa: S104  # Kubernetes reaches the pod's IP; a NetworkPolicy guards the port
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, server_header=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="metrics-server", daemon=True).start()


def multiprocess_exposition() -> str:
    """Every worker's metrics (prometheus_client's multiprocess mode, as BentoML renders them)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry).decode()
