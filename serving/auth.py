"""Bearer-token access control: recorded data and metrics are not for anyone on the internet.

Predictions stay open by default (the tutorial's clients send no token); `protect_predict` closes them too, and
`require_token` (set where the service faces a network) stops it from starting without a token.
The token is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

import errors
from serving.responses import send_json

if TYPE_CHECKING:
    from config import Settings

# Paths whose answers are recorded data or operational detail: they always need the token when one is set.
RECORD_PATHS = ("/v1/predictions", "/v1/feedback", "/v1/quality", "/v1/drift", "/metrics")
PREDICTION_PATHS = ("/predict", "/v1/classify")


class TokenRequired(SystemExit):
    """A token is required (DRYBEANS_REQUIRE_TOKEN) and none is set: the service exits, printing what to set."""


def bearer_settings(settings: Settings) -> dict[str, Any]:
    """BearerToken's arguments from the settings: the token (if any), and whether predictions need it too."""
    if settings.require_token and settings.api_token is None:
        raise TokenRequired(errors.ACCESS_NOT_CONFIGURED)
    return {"token": settings.api_token.get_secret_value() if settings.api_token else None,
            "protect_predict": settings.protect_predict}


def needs_token(path: str, *, protect_predict: bool) -> bool:
    """Whether a request to `path` must carry the token."""
    if path.startswith(RECORD_PATHS):
        return True
    return protect_predict and (path in PREDICTION_PATHS or (path.startswith("/v2/models/")
                                                              and path.endswith("/infer")))


class BearerToken:
    """Answer 401 (no token) or 403 (wrong token) on protected paths; let everything else through."""

    def __init__(self, app: ASGIApp, token: str | None, protect_predict: bool = False) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self._protect_predict = protect_predict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self._token is None or scope["type"] != "http"
                or not needs_token(scope["path"], protect_predict=self._protect_predict)):
            await self.app(scope, receive, send)
            return
        given = _bearer(dict(scope["headers"]).get(b"authorization", b""))
        if given is None:
            await send_json(send, 401, errors.error_body(errors.AUTHORIZATION_MISSING, "unauthorized"),
                            [(b"www-authenticate", b'Bearer realm="drybeans"')])
        elif not hmac.compare_digest(given, self._token):
            await send_json(send, 403, errors.error_body(errors.AUTHORIZATION_REFUSED, "forbidden"))
        else:
            await self.app(scope, receive, send)


def _bearer(header: bytes) -> bytes | None:
    scheme, _, credentials = header.partition(b" ")
    return credentials.strip() or None if scheme.lower() == b"bearer" else None
