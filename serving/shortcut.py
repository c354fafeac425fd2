"""The everyday requests answered in one step: the tutorial's `POST /predict` (`{"data": ..., "store"?: bool}`) and
`POST /v1/classify` (a `ClassifyRequest`).

BentoML's routes bind the call's signature, validate the body, call the API through its context and serialise the
answer; for one bean that bookkeeping cost more than the prediction and its database write together. These
middlewares, the innermost of the service's own (inside BentoML's metrics, access log and timeout, and inside the
body guard and bearer token), answer a request that already has the route's plain shape through the same code the
API runs (`DryBeans.tutorial_prediction`, `DryBeans.classification`), with the same bytes and headers
(`tests/test_shortcut.py` and `tests/test_hardening.py` compare both paths). Everything else goes the normal way:
another shape or type, a request with an `Origin` (CORS is applied further in), and every input the API refuses,
which the route then names as it always has (nothing was recorded yet). Only a failure to record, once recording
was tried, is answered here as the route would (503): trying again there could record part of the request twice.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors, rest_errors
from api.schemas import ClassifyRequest
from serving.bodies import read_body, replay
from serving.client_keys import client_key_in
from serving.running import RunningService, service_if_started

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, bytes, Headers]


class Shortcut:
    """Answer a plain `POST` to `path` directly; pass everything else on, body included."""

    path: ClassVar[str]

    def __init__(self, app: ASGIApp, service_name: str) -> None:
        self.app = app
        self.server = f"BentoML Service/{service_name}".encode()  # as BentoML's routes name the server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST" or _has_origin(scope):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        service = service_if_started()
        answer = None if service is None else await self._answered(service, body, client_key_in(scope["headers"]))
        if answer is None:
            await self.app(scope, replay(body), send)
            return
        status, content, headers = answer
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-length", str(len(content)).encode()), (b"content-type", b"application/json"), *headers,
            (b"server", self.server)]})
        await send({"type": "http.response.body", "body": content})

    async def answer(self, service: RunningService, body: bytes, client_key: str | None) -> Answer | None:
        """The answer's status, body and headers; None when the body is not the plain shape."""
        raise NotImplementedError

    async def _answered(self, service: RunningService, body: bytes, client_key: str | None) -> Answer | None:
        """`answer`, with a failure to record (recording was tried) answered as the route would, and None for any
        other refusal (nothing was recorded: the route answers it)."""
        try:
            return await self.answer(service, body, client_key)
        except errors.StoreUnavailable as failure:
            return failure.status, rest_errors.render(failure, self.path), []
        except errors.ApiError:
            return None


class PredictShortcut(Shortcut):
    """`POST /predict` in the tutorial's plain shape."""

    path = "/predict"

    async def answer(self, service: RunningService, body: bytes, client_key: str | None) -> Answer | None:
        request = plain_request(body)
        if request is None:
            return None
        predictions, recorded = await service.tutorial_prediction(*request, client_key=client_key)
        headers = [(name.lower().encode(), value.encode()) for name, value in recorded.headers().items()]
        return 200, orjson.dumps({"predictions": predictions}), headers


class ClassifyShortcut(Shortcut):
    """`POST /v1/classify` with a body that validates as a `ClassifyRequest`."""

    path = "/v1/classify"

    async def answer(self, service: RunningService, body: bytes, client_key: str | None) -> Answer | None:
        try:
            request = ClassifyRequest.model_validate_json(body)
        except ValidationError:  # the route names what is wrong
            return None
        return 200, await service.classification(request, client_key), []


def plain_request(body: bytes) -> tuple[str | list[Any], bool] | None:
    """`data` and `store` when the body is exactly the tutorial's shape with plain JSON types; else None.

    Anything looser (extra keys, `"store": "yes"`, JSON that orjson refuses) is left to the API's validation.
    """
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(request) is not dict or "data" not in request or not request.keys() <= {"data", "store"}:
        return None
    data, store = request["data"], request.get("store", True)
    if type(data) not in (str, list) or type(store) is not bool:
        return None
    return data, store


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])
