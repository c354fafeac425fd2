"""V2 inference in one step: a JSON `POST /v2/models/{name}[/versions/{version}]/infer` answered by a middleware.

The V2 routes are FastAPI's, mounted on the BentoML service: a request crosses BentoML's router, the mount, FastAPI's
own middleware, dependency solving and response validation before the inference itself; for one bean that cost
about twice the inference and its answer. This middleware, the innermost of the service's own (as /predict's
shortcut, serving/shortcut.py), answers a request whose JSON validates as an `InferenceRequest` through the route's
own code, `answer_inference`, with the same bytes and headers (`tests/test_v2_shortcut.py` compares both paths).
Everything else goes the normal way: binary tensor data, a request with an `Origin` (CORS is applied further in),
a body that does not validate, and every input the route refuses, which the route then names as it always has
(nothing was recorded yet). Only a failure to record, once recording was tried, is answered here as the route
would: trying again there could record part of the request twice.
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors, rest_errors
from protocol.routes import answer_inference, served_model
from protocol.schemas import InferenceRequest
from serving.bodies import read_body, replay
from serving.client_keys import client_key_in
from serving.running import service_if_started

INFER_PATH = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")
JSON_TYPES = (None, b"application/json")  # as the route reads a body without Content-Type: as JSON


class InferShortcut:
    """Answer a JSON V2 inference request directly; pass everything else on, body included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = INFER_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if matched is None or scope["method"] != "POST" or not _plain_json(scope):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        answer = await _answer(body, matched["name"], matched["version"], client_key_in(scope["headers"]))
        if answer is None:
            await self.app(scope, replay(body), send)
            return
        status, content, headers = answer
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-length", str(len(content)).encode()),
            *((name.encode(), value.encode()) for name, value in headers.items())]})
        await send({"type": "http.response.body", "body": content})


async def _answer(body: bytes, name: str, version: str | None,
                  key: str | None) -> tuple[int, bytes, dict[str, str]] | None:
    """The answer's status, body and headers, or None when the route should answer."""
    service = service_if_started()
    if service is None:
        return None
    try:
        request = InferenceRequest.model_validate_json(body)
        served_name, served_version = served_model(service, name, version)
        content, headers = await answer_inference(service, request, served_name, served_version, key=key)
    except errors.StoreUnavailable as failure:  # recording was tried
        return failure.status, rest_errors.render(failure, "v2 infer"), {"content-type": rest_errors.JSON}
    except (ValidationError, errors.ApiError):  # refused before anything was recorded
        return None
    return 200, content, headers


def _plain_json(scope: Scope) -> bool:
    """No Origin, no binary tensor data, and a JSON body (or one without Content-Type, read as JSON)."""
    content_type = None
    for header, value in scope["headers"]:
        if header in (b"origin", b"inference-header-content-length"):
            return False
        if header == b"content-type":
            content_type = value.split(b";")[0].strip().lower()
    return content_type in JSON_TYPES

