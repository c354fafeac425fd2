"""The tutorial's everyday request answered in one step: `POST /predict` with `{"data": ..., "store"?: bool}`.

BentoML's route for `/predict` binds the call's signature, validates the body into `TutorialRequest`, calls the
API through its context and serialises `TutorialResponse`; for one bean that bookkeeping cost more than the
prediction and its database write together. This middleware, the innermost of the service's own (inside
BentoML's metrics, access log and timeout, and inside the body guard and bearer token), answers a request that
already has exactly that plain shape through the same code the API runs, `DryBeans.tutorial_prediction`, with
the same bytes and headers (`tests/test_shortcut.py` and `tests/test_hardening.py` compare both paths).
Everything else goes the normal way: another shape or type, a request with an `Origin` (CORS is applied further
in), and every input the API refuses, which the route then names as it always has (nothing was recorded yet).
Only a failure to record, once recording was tried, is answered here as the route would (503): trying again
there could record part of the request twice.
"""

from __future__ import annotations

from typing import Any, Protocol

import bentoml
import orjson
from bentoml.exceptions import BentoMLException
from starlette.types import ASGIApp, Receive, Scope, Send

import errors
from recording import Recorded
from rollout.registry import client_key_in
from serving.bodies import read_body, replay

PATH = "/predict"


class TutorialPredictor(Protocol):
    """What the shortcut needs of the service instance."""

    async def tutorial_prediction(self, data: str | list[Any], store: bool,
                                  client_key: str | None = None) -> tuple[str, Recorded]:
        """The labels as a JSON-encoded string, and what became of the records."""
        ...


class PredictShortcut:
    """Answer a plain `POST /predict` directly; pass everything else on, body included."""

    def __init__(self, app: ASGIApp, service_name: str) -> None:
        self.app = app
        self.server = f"BentoML Service/{service_name}".encode()  # as BentoML's routes name the server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or _has_origin(scope):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        answer = await _answer(body, client_key_in(scope["headers"]))
        if answer is None:
            await self.app(scope, replay(body), send)
            return
        status, content, headers = answer
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-length", str(len(content)).encode()), (b"content-type", b"application/json"), *headers,
            (b"server", self.server)]})
        await send({"type": "http.response.body", "body": content})


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


async def _answer(body: bytes, key: str | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
    """The answer's status, body and prediction headers, or None when the route should answer."""
    request = plain_request(body)
    service = _current_service()
    if request is None or service is None:
        return None
    try:
        predictions, recorded = await service.tutorial_prediction(*request, client_key=key)
    except errors.StoreUnavailable as failure:  # recording was tried
        errors.log_answer("predict", failure)
        return failure.status, bytes(errors.error_response(failure).body), []
    except errors.ApiError:  # refused before anything was recorded
        return None
    headers = [(name.lower().encode(), value.encode()) for name, value in recorded.headers().items()]
    return 200, orjson.dumps({"predictions": predictions}), headers


def _current_service() -> TutorialPredictor | None:
    try:
        return bentoml.get_current_service()  # type: ignore[no-any-return]
    except BentoMLException:  # still starting: the normal route answers
        return None


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])

